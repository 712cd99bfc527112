"""What a detector found: the one type a monitor's detectors hand to the code that makes drift events.

A detector measures (a window's chi-square, a degradation test's bound, the concept chart's statistic) and
says what it found as a ``Finding``: the kind of event it would raise, the test and its figures, the window
and the batch row that raised it. ``ModelMonitor`` turns findings into drift events in one place
(``_event``), and a windowed kind's finding goes through the policy first (``_decide``, then ``_publish``:
fire, stay quiet, or resolve).

Examples
--------
>>> found = Finding(
...     kind="data_drift", detector="chi2", statistic=31.5, threshold=20.1, p_value=1e-6,
...     window={"start_time": 10.0, "end_time": 20.0, "count": 500, "start_offset": 0, "end_offset": 499},
...     row=499, feature="income",
... )
>>> found.feature, found.top_features, found.subject
('income', [], None)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from streamdrift.core.metrics.degradation import Verdict


@dataclass(frozen=True, slots=True)
class Finding:
    """A drift event's content before it is an event.

    Parameters
    ----------
    kind
        The event's kind (``data_drift``, ``performance_degradation``, ``rebaselined``...).
    detector
        The test that measured (``chi2``, ``accuracy``, ``cusum``...).
    statistic, threshold, p_value
        The test's figures: the statistic, the value it is compared with, its p-value if it has one.
    window
        The events the test covers: ``start_time`` and ``end_time`` (epoch seconds, or as written),
        ``count``, ``start_offset`` and ``end_offset``.
    row
        The row of the batch that raised it: its offset, event time and model version.
    feature
        The feature whose test fired, if one did.
    top_features
        The features ranked by how much they moved, ``{"feature", "score"}`` each.
    details
        The kind's own statistics.
    versions
        Events per model version in the window; the event names the busiest one.
    start_stream
        The stream of the window's first event, where it may not be the batch's.
    subject
        For news (``drift_resolved``, ``rebaselined``): the kind it is about.
    change_started_at
        An estimate of where the change began (concept drift's chart); None: the window's start.
    """

    kind: str
    detector: str
    statistic: float
    threshold: float
    p_value: float | None
    window: Mapping[str, Any]
    row: int
    feature: str | None = None
    top_features: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, int] | None = None
    start_stream: str | None = None
    subject: str | None = None
    change_started_at: object = None


class Watched(NamedTuple):
    """A windowed test's finding at a sub-window close, for the policy to decide on (``ModelMonitor._watched``):
    ``alarm`` fires when ``statistic`` is over ``threshold``, and resolves once it stays below the re-arm level.

    ``action``, if given, replaces the policy's on the fired event (an estimate only asks to ``investigate``).
    """

    alarm: str
    statistic: float
    threshold: float
    position: int
    found: Finding
    action: str | None = None


def degradation_watch(
    verdict: Verdict,
    *,
    alarm: str,
    detector: str,
    alpha: float,
    position: int,
    window: Mapping[str, Any],
    row: int,
    details: dict[str, Any],
    versions: dict[str, int] | None = None,
    start_stream: str | None = None,
    action: str | None = None,
) -> Watched:
    """A one-sided degradation test's ``verdict`` (accuracy or MAE, cost, expected cost) at the close of the window
    at ``position``, as the policy watches it: a ``performance_degradation`` finding.

    1 - p exceeds 1 - alpha exactly when the window is degraded; it falls back under the re-arm level
    (p > 0.2) only once the metric has recovered, not on a window that is merely less sure.

    >>> verdict = Verdict(degraded=True, statistic=0.81, threshold=0.85, p_value=0.001, bound=0.83, reference=0.9)
    >>> window = {"start_time": 10.0, "end_time": 20.0, "count": 500, "start_offset": 0, "end_offset": 499}
    >>> watched = degradation_watch(
    ...     verdict, alarm="performance_degradation", detector="accuracy", alpha=0.01, position=5000,
    ...     window=window, row=499, details={"metric": "accuracy"},
    ... )
    >>> round(watched.statistic, 6), round(watched.threshold, 6), watched.found.kind, watched.found.statistic
    (0.999, 0.99, 'performance_degradation', 0.81)
    """
    found = Finding(
        kind="performance_degradation",
        detector=detector,
        statistic=verdict.statistic,
        threshold=verdict.threshold,
        p_value=verdict.p_value,
        window=window,
        row=row,
        details=details,
        versions=versions,
        start_stream=start_stream,
    )
    return Watched(alarm, 1 - verdict.p_value, 1 - alpha, position, found, action)
