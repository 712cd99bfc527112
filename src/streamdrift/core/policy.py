"""Policy: from raw detections to drift events.

A detector says "this window differs"; the policy decides whether users hear
about it. Per (model, kind) it keeps an alarm that is either *armed* or
*fired*. ``watch`` looks at a windowed statistic at each sub-window close: an
armed alarm fires when the statistic is above the threshold, and a change that
persists is one event: the fired alarm stays *active* until ``cooldown_events``
rows of the stream have passed and the statistic has stayed below
``rearm_ratio`` × threshold (hysteresis) for ``resolve_after`` consecutive
closes, not one dip; then ``watch`` says ``"resolve"`` (the caller publishes a
``drift_resolved`` event) and the alarm is armed again. Concept drift does not
go through the policy: its detector restarts at each detection and publishes
every one (``core/concept.py``).

An alarm is per (kind, feature) where the kind's test is per feature
(``FEATURED``: data drift): ``alarm_key("data_drift", "x")`` is
``"data_drift/x"``, so a feature that drifts while another one's condition goes
on fires, and each one resolves on its own. One change of the world often moves
several features, whose tests cross the threshold a sub-window or two apart: a
feature that fires within a window's rows of the kind's latest *change* (the
latest drift event, ``change_within``) joins it, so the change is one event and
one ``drift_resolved``, once its last feature has resolved. Other kinds have one
alarm, named after them.

Positions are counts of stream rows, never wall-clock time, so a replay makes
the same decisions.

Examples
--------
One dip under the re-arm level does not re-arm: these windows give one event,
and two closes in a row below the level (``resolve_after=2``) resolve it.

>>> p = AlertPolicy(cooldown_events=100, resolve_after=2)
>>> windows = [(0.3, 10), (0.4, 20), (0.1, 50), (0.3, 150), (0.1, 160), (0.3, 170)]
>>> [p.watch("data_drift", s, 0.25, pos) for s, pos in windows]
['fire', None, None, None, None, None]
>>> p.active_kinds()
{'data_drift'}
>>> [p.watch("data_drift", s, 0.25, pos) for s, pos in [(0.1, 180), (0.1, 190), (0.3, 200)]]
[None, 'resolve', 'fire']
"""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime

KINDS = (
    "data_drift",
    "prediction_drift",
    "label_drift",
    "concept_drift",
    "performance_degradation",
    "data_quality",
    "scheduled_retrain",
    "multivariate_drift",
    "attribution_drift",
)
RETRAIN_KINDS = frozenset({"concept_drift", "performance_degradation", "scheduled_retrain"})
RESOLVED = "drift_resolved"  # the event that says a windowed kind's condition has gone (action "none")
REBASELINED = "rebaselined"  # the event that says a new reference was learnt after a drift (action "none")
NEWS = frozenset({RESOLVED, REBASELINED})  # informational events: no drift, never a retrain
# policy alarms that are not named after the kind of their events
ALARM_KIND = {
    "version_comparison": "performance_degradation",
    "cost": "performance_degradation",
    "expected_cost": "performance_degradation",
}
# the alarms of windowed statistics, decided by ``watch``
WATCHED = frozenset(
    {
        "data_drift",
        "prediction_drift",
        "label_drift",
        "performance_degradation",
        "version_comparison",
        "cost",
        "expected_cost",
        "data_quality",
        "multivariate_drift",
        "attribution_drift",
    }
)
# the kinds whose alarms are per feature: each feature's test is a condition of its own
FEATURED = frozenset({"data_drift"})
SCHEMA_VERSION = 1


def alarm_key(kind: str, feature: str) -> str:
    """The alarm of ``kind`` on ``feature`` (kinds hold no ``/``, so the kind is all before the first one).

    >>> alarm_key("data_drift", "a/b"), alarm_of("data_drift/a/b")
    ('data_drift/a/b', ('data_drift', 'a/b'))
    """
    return f"{kind}/{feature}"


def alarm_of(alarm: str) -> tuple[str, str | None]:
    """An alarm's name and feature: ``("data_drift", "x")`` for ``data_drift/x``, ``(alarm, None)`` otherwise."""
    name, _, feature = alarm.partition("/")
    return (name, feature) if _ else (alarm, None)


class AlertPolicy:
    """Cooldown and hysteresis per kind.

    Parameters
    ----------
    cooldown_events
        Stream rows after a drift event during which the same kind stays quiet.
    rearm_ratio
        The statistic must drop below ``rearm_ratio * threshold`` before the
        alarm can fire again.
    resolve_after
        Consecutive decisions (sub-window closes) with the statistic
        below ``rearm_ratio * threshold`` after which an active condition is
        resolved and the alarm armed again.
    """

    def __init__(self, cooldown_events: int, rearm_ratio: float = 0.8, resolve_after: int = 1):
        self.cooldown_events = cooldown_events
        self.rearm_ratio = rearm_ratio
        self.resolve_after = resolve_after
        self._reset()

    def _reset(self) -> None:
        # kind -> [armed, quiet_until_position]; while fired also [calm closes in a row, alert_id of the firing]
        # while fired (an alarm from a snapshot written before ``watch`` has two fields: calm 0, no alert_id)
        self.alarms: dict[str, list] = {}
        # kind with alarms per feature -> [position, alert_id, asked to retrain] of its latest change (drift event)
        self.changes: dict[str, list] = {}

    def watch(self, kind: str, statistic: float, threshold: float, position: int) -> str | None:
        """A windowed statistic at a sub-window close: ``"fire"`` (a new condition), ``"resolve"`` (the
        active condition has gone) or None (nothing to publish).

        An active condition resolves once its cooldown is over and ``resolve_after`` closes in a row have
        scored below ``rearm_ratio`` × threshold; a close at or above that level starts the count again.
        """
        alarm = self.alarms.get(kind)
        if alarm is None or alarm[0]:
            if statistic > threshold:
                self.alarms[kind] = [False, position + self.cooldown_events, 0, None]
                return "fire"
            if alarm is None:
                self.alarms[kind] = [True, 0]
            return None
        calm = 0
        if statistic < self.rearm_ratio * threshold:
            calm = (alarm[2] if len(alarm) > 2 else 0) + 1
        if calm >= self.resolve_after and position >= alarm[1]:
            self.alarms[kind] = [True, alarm[1]]
            return "resolve"
        self.alarms[kind] = [False, alarm[1], calm, alarm[3] if len(alarm) > 3 else None]
        return None

    def clear(self, kind: str) -> None:
        """Arm ``kind``'s alarm, and its features', again without a resolution: the condition became the
        reference (rebaseline)."""
        alarm = self.alarms.get(kind)
        if alarm is not None:
            self.alarms[kind] = [True, alarm[1]]
        for key in self._features_of(kind):
            del self.alarms[key]  # an armed feature's alarm is no alarm at all: none is kept
        self.changes.pop(kind, None)

    def opened(self, kind: str, position: int, alert_id: str, retrain: bool = False) -> None:
        """``kind``'s drift event ``alert_id``, at ``position``, opened a change (features that fire soon after
        join it); ``retrain``: its action was retrain."""
        self.changes[kind] = [position, alert_id, retrain]

    def change_within(self, kind: str, position: int, rows: int, retrain: bool = False) -> str | None:
        """The ``alert_id`` of ``kind``'s latest change if it was opened less than ``rows`` rows before
        ``position`` (a feature firing now is part of it), else None; for a feature that asks to ``retrain``,
        only a change that asked too (else its retrain would be lost)."""
        change = self.changes.get(kind)
        if change is None or position - change[0] >= rows or (retrain and not change[2]):
            return None
        return str(change[1])

    def adopt(self, kind: str, feature: str) -> None:
        """A snapshot from before alarms per feature may hold one alarm for a kind that now has them: its active
        condition becomes ``feature``'s (the one that drifts most at the next close), so that feature does not
        fire again for it; an armed one is dropped."""
        alarm = self.alarms.pop(kind, None)
        key = alarm_key(kind, feature)
        if alarm is not None and not alarm[0] and key not in self.alarms:
            self.alarms[key] = alarm

    def forget(self, alarm: str) -> None:
        """Drop an armed feature's alarm (resolved): an absent one is armed, and so the alarms kept are
        bounded by the features active at once, not by every feature ever tested."""
        if self.alarms.get(alarm, [False])[0]:
            del self.alarms[alarm]

    def _features_of(self, kind: str) -> list[str]:
        """The keys of ``kind``'s alarms per feature, sorted."""
        prefix = kind + "/"
        return sorted(key for key in self.alarms if key.startswith(prefix))

    def active_of(self, kind: str) -> list[str]:
        """The features of ``kind`` whose condition is active, by name."""
        return [alarm_of(key)[1] or "" for key in self._features_of(kind) if not self.alarms[key][0]]

    def active_features(self) -> dict[str, list[str]]:
        """Per kind with alarms per feature, the features whose condition is active, by name (kinds without
        any left out)."""
        active = {kind: self.active_of(kind) for kind in sorted(FEATURED)}
        return {kind: features for kind, features in active.items() if features}

    def firing_alerts(self, kind: str) -> list[str]:
        """The ``alert_id`` s of the events that opened ``kind``'s active conditions, its own then its features'
        by name (unknown ones left out)."""
        keys = [kind, *self._features_of(kind)]
        found = [self.firing_alert(key) for key in keys if key in self.alarms and not self.alarms[key][0]]
        return list(dict.fromkeys(alert for alert in found if alert is not None))  # features of one change: once

    def fired_alert(self, kind: str, alert_id: str) -> None:
        """Note the ``alert_id`` of the event a fired alarm published, for its ``drift_resolved`` event."""
        self.alarms[kind][3] = alert_id

    def firing_alert(self, kind: str) -> str | None:
        """The ``alert_id`` of the event that opened ``kind``'s active condition (None if unknown)."""
        alarm = self.alarms.get(kind)
        return alarm[3] if alarm is not None and len(alarm) > 3 else None

    def active_kinds(self) -> set[str]:
        """Kinds of drift event whose windowed condition has fired and not resolved (a concept alarm of an
        older snapshot, which nothing re-arms any more, is not one)."""
        kinds = (alarm_of(k)[0] for k, alarm in self.alarms.items() if not alarm[0])
        return {ALARM_KIND.get(k, k) for k in kinds if k in WATCHED}

    def state(self) -> dict:
        return {"alarms": self.alarms, "changes": self.changes}

    def load_state(self, state: dict) -> None:
        self.alarms = {k: list(v) for k, v in state["alarms"].items()}
        self.changes = {k: list(v) for k, v in state.get("changes", {}).items()}  # none before alarms per feature


def severity(statistic: float, threshold: float) -> str:
    return "critical" if statistic >= 2 * threshold else "warning"


def action_for(kind: str, feature: str | None, important_features: frozenset[str] = frozenset()) -> str:
    if kind in NEWS:
        return "none"  # informational: the retrain listener's default filter (retrain) skips it
    if kind in RETRAIN_KINDS or (kind == "data_drift" and feature in important_features):
        return "retrain"
    return "investigate"


def alert_id(
    model_id: str, kind: str, detector: str, feature: str | None, stream: str, partition: int, offset: int
) -> str:
    """Deterministic id: the same input position (stream, partition, offset) always yields the same alert.

    >>> alert_id("m1", "data_drift", "chi2", "age", "predictions", 0, 41)
    '92f8ea969c2403ab0d6e81d20a5a700d'
    """
    key = "\x1f".join((model_id, kind, detector, feature or "", stream, str(partition), str(offset)))
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def rfc3339(epoch_s: float) -> str:
    """Epoch seconds as an RFC 3339 UTC timestamp with millisecond precision. A time past year 9999 is written as
    its last millisecond, where RFC 3339 (and the contract's event times) end: only a retrain budget's next
    allowed time can be one (an event near the end plus the budget's period).

    >>> rfc3339(0.25), rfc3339(253_402_300_800 + 86_400)
    ('1970-01-01T00:00:00.250Z', '9999-12-31T23:59:59.999Z')
    """
    if epoch_s >= _LAST_MILLISECOND:
        return "9999-12-31T23:59:59.999Z"
    return datetime.fromtimestamp(epoch_s, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_LAST_MILLISECOND = 253_402_300_799.999  # 9999-12-31T23:59:59.999Z, as near as a float is


def drift_event(
    *,
    model_id: str,
    model_version: str | None,
    kind: str,
    detector: str,
    feature: str | None,
    statistic: float,
    threshold: float,
    p_value: float | None,
    window: dict,
    stream: str,
    partition: int,
    top_features: list[dict],
    action: str,
    detected_at: float | str,
    subject: str | None = None,
) -> dict:
    """A drift event as published (see schemas/drift_event.schema.json), ``emitted_at`` aside.

    ``subject``: for news (drift_resolved, rebaselined), the kind it is about, part of ``alert_id``: two
    kinds resolved by one row are two alerts.

    ``emitted_at`` is stamped by the publisher: it is the only field that
    depends on the wall clock, and it is not part of any state.

    ``statistic``, ``threshold`` and ``p_value`` must be finite (JSON has no
    infinity; orjson would write null, which the schema refuses): the decoder's
    bounds keep them so. One that is not raises ``ValueError``, and the engine
    quarantines the model rather than publish an event that breaks the contract.
    """
    for name, value in (("statistic", statistic), ("threshold", threshold), ("p_value", p_value)):
        if value is not None and not math.isfinite(value):
            raise ValueError(f"drift event {kind}/{detector}: {name} is not finite")
    return {
        "schema_version": SCHEMA_VERSION,
        "alert_id": alert_id(
            model_id,
            f"{kind}/{subject}" if subject else kind,
            detector,
            feature,
            stream,
            partition,
            window["end_offset"],
        ),
        "model_id": model_id,
        "model_version": model_version,
        "kind": kind,
        "severity": "info" if kind in NEWS else severity(statistic, threshold),
        "detector": detector,
        "feature": feature,
        "statistic": statistic,
        "threshold": threshold,
        "p_value": p_value,
        "window": {**window, "partition": partition},
        "top_features": top_features,
        "action": action,
        "detected_at": detected_at,
    }


class RetrainLedger:
    """A model's retrain budget in event time: at most ``max_retrains`` ``retrain`` actions in any
    ``period_s`` seconds of event time, and ``min_interval_s`` between two.

    It keeps the event times of the latest ``max_retrains`` retrains (no more are needed: an older one
    is outside the period whenever the budget could be full) and a clock, the latest event time it was
    asked about, so an event stamped earlier than one already seen is judged at the clock, never in the past.

    >>> ledger = RetrainLedger(max_retrains=2, period_s=100.0, min_interval_s=10.0)
    >>> [ledger.spend(t) for t in (0.0, 5.0)]
    [None, {'used': 1, 'limit': 2, 'period_s': 100.0, 'next_allowed_at': 10.0}]
    >>> ledger.spend(20.0), ledger.spend(50.0)
    (None, {'used': 2, 'limit': 2, 'period_s': 100.0, 'next_allowed_at': 100.0})
    >>> ledger.spend(100.0), ledger.remaining(100.0)
    (None, 0)
    """

    def __init__(self, max_retrains: int, period_s: float, min_interval_s: float = 0.0):
        self.max_retrains = max_retrains
        self.period_s = period_s
        self.min_interval_s = min_interval_s
        self.times: list[float] = []  # event times of the latest retrains, oldest first (at most max_retrains)
        self.clock = -math.inf

    def _used(self, now: float) -> list[float]:
        """The retrains within the period that ends at ``now``."""
        return [t for t in self.times if t > now - self.period_s]

    def spend(self, event_time: float) -> dict | None:
        """A retrain asked for at ``event_time``: None if the budget allows it (it is then counted), else
        the ``budget`` field of the event it demotes (``next_allowed_at`` in epoch seconds)."""
        now = self.clock = max(self.clock, event_time)
        used = self._used(now)
        next_allowed = now
        if len(used) >= self.max_retrains:  # the period is full: the oldest in it frees a place
            next_allowed = used[len(used) - self.max_retrains] + self.period_s
        if self.times and now < self.times[-1] + self.min_interval_s:
            next_allowed = max(next_allowed, self.times[-1] + self.min_interval_s)
        if next_allowed > now:
            return {
                "used": len(used),
                "limit": self.max_retrains,
                "period_s": self.period_s,
                "next_allowed_at": next_allowed,
            }
        self.times = [*self.times, now][-self.max_retrains :]
        return None

    def remaining(self, now: float) -> int:
        """Retrains still allowed in the period that ends at ``now`` (or at the clock, if later)."""
        return self.max_retrains - len(self._used(max(self.clock, now)))

    def state(self) -> dict:
        return {"times": list(self.times), "clock": self.clock if math.isfinite(self.clock) else None}

    def load_state(self, state: dict) -> None:
        self.times = [float(t) for t in state["times"]][-self.max_retrains :]
        self.clock = -math.inf if state["clock"] is None else float(state["clock"])
