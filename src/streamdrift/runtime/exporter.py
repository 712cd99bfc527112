"""Prometheus exposition and the worker's HTTP endpoints.

Per-model series are read from the monitors' own state at scrape time, so a
counter equals what the snapshot holds (it survives restarts), and the series
of a partition that moved to another worker disappear with it.

Label sets are bounded: the first ``max_models`` model ids (in sorted order)
get their own ``model_id`` label; the rest are summed under
``model_id="__other__"``, and their number is exported. Per-feature scores are
exported only for the labelled models.

Endpoints: ``/metrics`` (Prometheus text format), ``/healthz`` (the consume
loop is alive), ``/readyz`` (partitions assigned and restored), ``/status``
(a JSON summary per model; off with ``status_endpoint = false``).

The endpoints never read the monitors' live state: the consume loop publishes
a `StatusView` (the models' summaries, immutable, and each partition's offsets)
and a request reads the latest one, so no scrape waits for the worker's lock
or holds up consumption. The server is bounded (`BoundedHTTPServer`): a fixed
pool of threads, a cap on open connections, a deadline per connection; a
client that goes away is one JSON log line.
"""

from __future__ import annotations

import logging
import queue
import selectors
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import BaseServer
from typing import Any, Protocol

import orjson
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.utils import floatToGoString

from streamdrift.core.decode import OTHER_MODELS
from streamdrift.core.policy import KINDS, NEWS
from streamdrift.core.summary import MonitorSummary

log = logging.getLogger("streamdrift.http")

OTHER = OTHER_MODELS  # a name the contract refuses as a model_id: no event's model is summed with the overflow
QUALITY_CHECKS = ("missing_rate", "invalid_rate", "out_of_range_rate", "new_category_rate")
PERFORMANCE_METRICS = (
    "accuracy",
    "precision",
    "recall",
    "f1",
    "macro_f1",
    "log_loss",
    "brier",
    "roc_auc",
    "ece",
    "mae",
    "rmse",
    "r2",
    "mape",
)


COUNTER, GAUGE = "counter", "gauge"


class _Family:
    """One metric family's samples as ``ModelCollector`` gathers them: label values and a value
    per sample, made into prometheus_client's families only for a registry (see ``exposition``)."""

    __slots__ = ("kind", "name", "documentation", "labels", "samples")

    def __init__(self, kind: str, name: str, documentation: str, labels: Sequence[str] = ()):
        self.kind, self.name, self.documentation, self.labels = kind, name, documentation, tuple(labels)
        self.samples: list[tuple[tuple, float]] = []

    @property
    def sample_name(self) -> str:
        """What the text format names the samples (and the HELP and TYPE lines): counters end in _total."""
        return self.name + "_total" if self.kind == COUNTER else self.name

    def add(self, values: list | tuple, value: float) -> None:
        self.samples.append((tuple(values), value))

    def metric(self) -> CounterMetricFamily | GaugeMetricFamily:
        family = (CounterMetricFamily if self.kind == COUNTER else GaugeMetricFamily)(
            self.name, self.documentation, labels=self.labels
        )
        for values, value in self.samples:
            family.add_metric(values, value)
        return family


class ModelCollector:
    """Collects per-model series from ``summaries()``: model_id -> ``ModelMonitor.summary()``.

    A prometheus_client collector (``collect``), and its own writer of the same text
    (``exposition``): what ``generate_latest`` writes for these families, byte for byte,
    in a quarter of the time. The writer keeps each series' name-and-labels prefix, so
    a scrape formats only the values (prometheus_client checks and escapes every label
    name and value of every sample, every scrape: 13.5 ms for 10 models' 1,657 series).
    """

    def __init__(self, summaries: Callable[[], Mapping[str, MonitorSummary]], max_models: int):
        self.summaries = summaries
        self.max_models = max_models
        self._prefixes: dict[tuple, str] = {}  # (family name, label values) -> 'name{label="value",...} '
        self._heads: dict[str, str] = {}  # family name -> its HELP and TYPE lines

    def collect(self) -> Iterable:
        return [family.metric() for family in self._families()]

    def exposition(self) -> bytes:
        """The text format of ``collect()``'s families, as ``generate_latest`` writes it."""
        families = self._families()
        prefixes, heads = self._prefixes, self._heads
        if len(prefixes) > 4 * sum(len(f.samples) for f in families) + 1000:  # series gone (models moved)
            prefixes.clear()
        out = []
        for family in families:
            head = heads.get(family.name)
            if head is None:
                head = heads[family.name] = _head(family)
            out.append(head)
            name = family.name
            for values, value in family.samples:
                prefix = prefixes.get((name, values))
                if prefix is None:
                    prefix = prefixes[(name, values)] = _prefix(family, values)
                out.append(prefix)
                out.append(floatToGoString(value))
                out.append("\n")
        return "".join(out).encode()

    def _families(self) -> list[_Family]:
        models = self.summaries()
        ids = sorted(models)
        own_label, overflow = ids[: self.max_models], ids[self.max_models :]
        events = _Family(
            COUNTER, "streamdrift_events", "Events consumed per model and stream", labels=["model_id", "stream"]
        )
        drift = _Family(
            COUNTER, "streamdrift_drift_events", "Drift events raised per model and kind", labels=["model_id", "kind"]
        )
        scores = _Family(
            GAUGE,
            "streamdrift_drift_score",
            "Latest drift statistic (PSI) per feature",
            labels=["model_id", "kind", "feature"],
        )
        score_impact = _Family(
            GAUGE,
            "streamdrift_score_impact",
            "Change in the mean score explained by each feature's shift, latest window against the reference",
            labels=["model_id", "feature"],
        )
        score_change = _Family(
            GAUGE,
            "streamdrift_score_change",
            "Observed change in the mean score, latest window against the reference",
            labels=["model_id"],
        )
        mismatches = _Family(
            COUNTER, "streamdrift_type_mismatches", "Feature values of the wrong type", labels=["model_id", "feature"]
        )
        ready = _Family(
            GAUGE, "streamdrift_reference_ready", "1 once the model's reference is built", labels=["model_id"]
        )
        last = _Family(
            GAUGE, "streamdrift_last_event_timestamp_seconds", "Latest event time seen per model", labels=["model_id"]
        )
        quality = _Family(
            GAUGE,
            "streamdrift_data_quality_rate",
            "Share of the latest window's events per data-quality check and feature",
            labels=["model_id", "feature", "check"],
        )
        labelled = _Family(
            COUNTER, "streamdrift_labelled_events", "Feedback events that graded a prediction", labels=["model_id"]
        )
        errors = _Family(
            COUNTER, "streamdrift_prediction_errors", "Graded predictions that were wrong", labels=["model_id"]
        )
        perf = _Family(
            GAUGE,
            "streamdrift_model_metric",
            "Performance of graded predictions over the sliding window or since start",
            labels=["model_id", "metric", "scope"],
        )
        estimated = _Family(
            GAUGE,
            "streamdrift_estimated_accuracy",
            "Label-free accuracy estimate from scores (CBPE), latest window",
            labels=["model_id"],
        )
        reference_acc = _Family(
            GAUGE,
            "streamdrift_reference_accuracy",
            "Accuracy the degradation test compares against",
            labels=["model_id"],
        )
        join_pending = _Family(
            GAUGE,
            "streamdrift_join_pending",
            "Predictions or feedback waiting in the join",
            labels=["model_id", "side"],
        )
        join_lost = _Family(
            COUNTER,
            "streamdrift_join_unmatched",
            "Join records dropped: expired, evicted at a bound, or duplicates",
            labels=["model_id", "side", "reason"],
        )
        version_acc = _Family(
            GAUGE, "streamdrift_version_accuracy", "Windowed accuracy per model version", labels=["model_id", "version"]
        )
        version_business = _Family(
            GAUGE,
            "streamdrift_version_metric",
            "Windowed mean cost and value of graded predictions per model version",
            labels=["model_id", "version", "metric"],
        )
        fairness = _Family(
            GAUGE,
            "streamdrift_fairness_gap",
            "Gap between segments of the sensitive attribute",
            labels=["model_id", "attribute", "gap"],
        )
        active = _Family(
            GAUGE,
            "streamdrift_drift_active",
            "1 while a kind of drift is ongoing (fired, not yet resolved), else 0",
            labels=["model_id", "kind"],
        )
        budget = _Family(
            GAUGE,
            "streamdrift_retrain_budget_remaining",
            "Retrain actions the model's retrain budget still allows in the period ending at its latest event time",
            labels=["model_id"],
        )
        concept = _Family(
            GAUGE,
            "streamdrift_concept_statistic",
            "Concept-drift detector statistic on the error stream (CUSUM, in nats)",
            labels=["model_id"],
        )
        other = {"predictions": 0, "feedback": 0}
        other_drift: dict[str, int] = {}
        for model_id in own_label:
            s = models[model_id]
            events.add([model_id, "predictions"], s.predictions)
            events.add([model_id, "feedback"], s.feedback)
            # every kind from 0, so the first drift event is an increase Prometheus can see
            for kind in KINDS:
                drift.add([model_id, kind], s.drift_events.get(kind, 0))
            for kind in sorted(NEWS):
                drift.add([model_id, kind], s.drift_events.get(kind, 0))
            for kind in KINDS:
                active.add([model_id, kind], float(kind in s.drift_active))
            if s.retrain_budget_remaining is not None:  # only models with a budget have the series
                budget.add([model_id], s.retrain_budget_remaining)
            for kind, kind_scores in (
                ("data_drift", s.feature_scores),
                ("prediction_drift", s.output_scores),
                ("label_drift", s.label_scores),
                ("attribution_drift", s.attribution_scores),
            ):
                for feature, value in sorted(kind_scores.items()):
                    scores.add([model_id, kind, feature], value)
            for feature, value in sorted(s.score_impact.items()):
                score_impact.add([model_id, feature], value)
            if s.score_change is not None:
                score_change.add([model_id], s.score_change)
            for feature, n in sorted(s.type_mismatches.items()):
                mismatches.add([model_id, feature], n)
            ready.add([model_id], float(s.reference_ready))
            last.add([model_id], s.last_event_time)
            for feature, rates in sorted(s.quality.items()):
                for check in QUALITY_CHECKS:
                    quality.add([model_id, feature, check], rates[check])
            labelled.add([model_id], s.labelled)
            errors.add([model_id], s.errors)
            concept.add([model_id], s.concept_statistic)
            for scope, report in (("window", s.window_performance), ("cumulative", s.cumulative_performance)):
                for metric in PERFORMANCE_METRICS:
                    if report.get(metric) is not None:
                        perf.add([model_id, metric, scope], report[metric])
            if s.estimated_accuracy is not None:
                estimated.add([model_id], s.estimated_accuracy)
            if s.reference_accuracy is not None:
                reference_acc.add([model_id], s.reference_accuracy)
            j = s.join
            for side in ("predictions", "feedback"):
                join_pending.add([model_id, side], j[f"pending_{side}"])
                for reason in ("expired", "evicted", "duplicate"):
                    join_lost.add([model_id, side, reason], j[f"{reason}_{side}"])
            for version, v in sorted(s.versions.get("versions", {}).items()):
                if v.get("value") is not None:
                    version_acc.add([model_id, version], v["value"])
            if s.business is not None:
                _add_business(perf, version_business, model_id, s.business)
            gaps = s.segments.get("fairness") or {}
            for gap in ("demographic_parity_difference", "equal_opportunity_difference"):
                if gaps.get(gap) is not None:
                    fairness.add([model_id, gaps["attribute"], gap], gaps[gap])
        for model_id in overflow:
            s = models[model_id]
            other["predictions"] += s.predictions
            other["feedback"] += s.feedback
            for kind, n in s.drift_events.items():
                other_drift[kind] = other_drift.get(kind, 0) + n
        if overflow:
            for stream, n in other.items():
                events.add([OTHER, stream], n)
            for kind, n in sorted(other_drift.items()):
                drift.add([OTHER, kind], n)
        count = _Family(GAUGE, "streamdrift_models", "Models monitored by this worker")
        count.add((), len(ids))
        unlabelled = _Family(
            GAUGE,
            "streamdrift_models_unlabelled",
            f"Models aggregated under model_id={OTHER!r} (over metrics_max_models)",
        )
        unlabelled.add((), len(overflow))
        return [
            events,
            drift,
            active,
            budget,
            scores,
            score_impact,
            score_change,
            mismatches,
            ready,
            last,
            quality,
            labelled,
            errors,
            concept,
            perf,
            estimated,
            reference_acc,
            join_pending,
            join_lost,
            version_acc,
            version_business,
            fairness,
            count,
            unlabelled,
        ]


def _add_business(perf: _Family, per_version: _Family, model_id: str, business: dict[str, Any]) -> None:
    """Cost and value (``MonitorSummary.business``) as model metrics: ``cost`` and ``value`` the means per
    graded prediction that has one, ``cost_sum`` and ``value_sum`` their sums, over the window and since
    the start; ``expected_cost`` (from scores) and ``reference_cost`` over the window; the window's means
    per version. A series without rows that have one is left out, not written as 0."""
    for scope in ("window", "cumulative"):
        report = business[scope]
        for metric, rows in (("cost", "costed"), ("value", "valued")):
            if report.get(rows):
                perf.add([model_id, metric, scope], report[metric])
                perf.add([model_id, f"{metric}_sum", scope], report[f"{metric}_sum"])
    for metric in ("expected_cost", "reference_cost"):
        if business[metric] is not None:
            perf.add([model_id, metric, "window"], business[metric])
    for version, v in sorted(business["window"].get("versions", {}).items()):
        for metric in ("cost", "value"):
            if v[metric] is not None:
                per_version.add([model_id, version, metric], v[metric])


def _head(family: _Family) -> str:
    name = family.sample_name
    doc = family.documentation.replace("\\", r"\\").replace("\n", r"\n")
    return f"# HELP {name} {doc}\n# TYPE {name} {family.kind}\n"


def _prefix(family: _Family, values: tuple) -> str:
    """``name{label="value",...} `` as generate_latest writes a sample: labels sorted by name, values
    escaped (backslash, newline, double quote); the names are ours and valid, so never escaped."""
    name = family.sample_name
    if not values:
        return name + " "
    labels = ",".join(f'{k}="{_escape(str(v))}"' for k, v in sorted(zip(family.labels, values)))
    return f"{name}{{{labels}}} "


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def status_json(status: dict[str, Any]) -> bytes:
    """``/status``'s body: keys sorted, each model's `MonitorSummary` as its ``as_dict()``.

    >>> from streamdrift.core.config import MonitorSettings
    >>> from streamdrift.core.monitor import ModelMonitor
    >>> body = orjson.loads(status_json({"models": {"m": ModelMonitor("m", MonitorSettings()).summary()}}))
    >>> fields = list(body["models"]["m"])
    >>> fields == sorted(fields), body["models"]["m"]["concept_statistic"]
    (True, 0.0)
    """
    return orjson.dumps(status, default=_summary_dict, option=orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS)


def _summary_dict(value: object) -> dict[str, Any]:
    if isinstance(value, MonitorSummary):
        return value.as_dict()
    raise TypeError(f"/status cannot hold a {type(value).__name__}")


class Health:
    """What /healthz and /readyz answer. Wall-clock here is fine: it never touches state."""

    def __init__(self, stale_after_s: float = 60.0):
        self.stale_after_s = stale_after_s
        self.ready = False
        self.last_loop = time.monotonic()

    def beat(self) -> None:
        self.last_loop = time.monotonic()

    @property
    def alive(self) -> bool:
        return time.monotonic() - self.last_loop < self.stale_after_s


class _Monitor(Protocol):
    """What the view reads of a ``ModelMonitor``: its summary, and the event counts that say it changed."""

    @property
    def predictions_total(self) -> int: ...
    @property
    def feedback_total(self) -> int: ...
    def summary(self) -> MonitorSummary: ...


class _Engine(Protocol):
    @property
    def offsets(self) -> Mapping[str, int]: ...
    @property
    def monitors(self) -> Mapping[str, _Monitor]: ...


class _Partition(Protocol):
    @property
    def engine(self) -> _Engine: ...


class StatusView:
    """The summaries ``/metrics`` and ``/status`` serve, published by the consume loop.

    The loop calls ``publish`` between batches, the only time nothing changes its state, so the
    view needs no lock; an HTTP thread reads the latest published view, a value it replaces whole
    and never mutates. Publishing rebuilds only the summaries of models whose event counts moved
    (a monitor changes only by observing events), at most every ``min_interval_s``, and waits
    longer after a costly one, so it takes at most ``max_share`` of the loop's time whatever the
    number of models. A change of the owned partitions is published at once: the series of a
    partition that moved away disappear with it.

    Parameters
    ----------
    health
        The worker's `Health`: ``/status`` shows its ``ready`` as it is now.
    min_interval_s
        Seconds between two publications, at least.
    max_share
        Share of the consume loop's time publications may take.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> from streamdrift.core.config import MonitorSettings
    >>> from streamdrift.core.monitor import ModelMonitor
    >>> view = StatusView(Health())
    >>> view.summaries(), view.status()
    ({}, {'ready': False, 'partitions': {}})
    >>> engine = SimpleNamespace(offsets={"predictions": 42}, monitors={"m": ModelMonitor("m", MonitorSettings())})
    >>> view.publish({0: SimpleNamespace(engine=engine)})
    True
    >>> sorted(view.summaries()), view.status()["partitions"]["0"]["offsets"]
    (['m'], {'predictions': 42})
    """

    def __init__(self, health: Health, min_interval_s: float = 1.0, max_share: float = 0.05):
        self.health = health
        self.min_interval_s = min_interval_s
        self.max_share = max_share
        self._partitions: dict[int, tuple[dict[str, int], dict[str, MonitorSummary]]] = {}
        self._summaries: dict[str, MonitorSummary] = {}
        # (partition, model_id) -> (the monitor, its event counts, its summary) as last published
        self._built: dict[tuple[int, str], tuple[_Monitor, int, int, MonitorSummary]] = {}
        self._next = 0.0  # time.monotonic() of the next publication due
        # topic -> misrouted records seen by this worker (``core/routing.py``); replaced whole by the loop
        self.misrouted: dict[str, int] = {}
        # the publication last serialised for /status, and its partitions serialised (``status_body``)
        self._serialised: tuple[object, orjson.Fragment] | None = None

    def publish(self, partitions: Mapping[int, _Partition], force: bool = False) -> bool:
        """Publish the summaries of ``partitions`` (partition -> state) if due, or ``force``; True if it did."""
        now = time.monotonic()
        if not force and now < self._next and partitions.keys() == self._partitions.keys():
            return False
        built: dict[tuple[int, str], tuple[_Monitor, int, int, MonitorSummary]] = {}
        published: dict[int, tuple[dict[str, int], dict[str, MonitorSummary]]] = {}
        for p, state in sorted(partitions.items()):
            summaries = {}
            for model_id, monitor in state.engine.monitors.items():
                counts = (monitor.predictions_total, monitor.feedback_total)
                last = self._built.get((p, model_id))
                if last is not None and last[0] is monitor and last[1:3] == counts:
                    summary = last[3]
                else:
                    summary = monitor.summary()
                built[(p, model_id)] = (monitor, *counts, summary)
                summaries[model_id] = summary
            published[p] = (dict(state.engine.offsets), summaries)
        self._built = built
        # two assignments a reader may see apart: each is a whole, consistent publication of its own
        self._partitions = published
        self._summaries = {m: s for _, models in published.values() for m, s in models.items()}
        spent = time.monotonic() - now
        self._next = now + max(self.min_interval_s, spent / self.max_share)
        return True

    def summaries(self) -> dict[str, MonitorSummary]:
        """model_id -> its latest published summary (what ``ModelCollector`` reads)."""
        return self._summaries

    def status(self) -> dict[str, Any]:
        """``/status``'s document: ready now, per partition its offsets and models as published, and the
        misrouted records per topic when there were any."""
        doc: dict[str, Any] = {
            "ready": self.health.ready,
            "partitions": {
                str(p): {"offsets": offsets, "models": models} for p, (offsets, models) in self._partitions.items()
            },
        }
        if self.misrouted:
            doc["misrouted"] = self.misrouted
        return doc

    def status_body(self) -> bytes:
        """``status_json(self.status())``, with the published partitions serialised once per publication.

        Serialising every model's summary is most of a ``/status`` request at 2,000 models, and a client
        that polls faster than the loop publishes (``bench.py`` polls five times a second) paid it for the
        same publication again and again, on the worker's CPU (issue 19). ``ready`` and ``misrouted`` stay
        as they are now.
        """
        published = self._partitions  # replaced whole by publish, never changed: one read is one publication
        cached = self._serialised
        if cached is None or cached[0] is not published:
            partitions = {str(p): {"offsets": offsets, "models": models} for p, (offsets, models) in published.items()}
            cached = self._serialised = (published, orjson.Fragment(status_json(partitions)))
        doc: dict[str, Any] = {"ready": self.health.ready, "partitions": cached[1]}
        if self.misrouted:
            doc["misrouted"] = self.misrouted
        return status_json(doc)


# A request head (request line and headers) longer than this goes to the pool as it is (the handler refuses it)
_HEAD_BYTES = 16 * 1024
_RECHECK_S = 0.05  # how often a connection whose head is still arriving is looked at again


class BoundedHTTPServer(ThreadingHTTPServer):
    """An HTTP server whose resources do not grow with its clients.

    A fixed pool of ``threads`` handles the connections; at most ``max_connections`` are open at
    once (one more is closed as soon as it is accepted, and logged); each has ``timeout_s`` in
    all, from its accept to its last byte written, after which it is shut down (a client sending
    its headers one byte at a time is cut off too). A request that fails (a client that went
    away, a timeout) is one JSON log line, never a traceback on stderr. It keeps
    ``ThreadingHTTPServer``'s interface, the type the worker holds, not its thread per connection.

    A connection reaches the pool only once its request head has arrived, so clients slow to send
    hold no thread; and the probes (``probes``: path -> status and body, or None for other paths)
    are answered at once by the thread that waits for heads, never queued behind the pool, so
    liveness and readiness answer even while slow readers hold every thread of the pool.
    """

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        threads: int = 4,
        max_connections: int = 64,
        timeout_s: float = 10.0,
        probes: Callable[[str], tuple[int, bytes] | None] | None = None,
    ):
        super().__init__(address, handler, bind_and_activate=False)
        try:
            self.server_bind()
            self.server_activate()
        except BaseException:
            self.socket.close()  # not server_close: it stops the threads below, not started yet
            raise
        self.timeout_s = timeout_s
        self.probes = probes
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="http")
        self._slots = threading.BoundedSemaphore(max_connections)
        self._deadlines: dict[socket.socket, float] = {}  # open connections -> time.monotonic() they end by
        self._deadlines_lock = threading.Lock()
        self._closed = threading.Event()
        self._watchdog = threading.Thread(target=self._cut_overdue, name="http-deadlines", daemon=True)
        self._watchdog.start()
        # accepted connections go to the thread that waits for their heads; the pair wakes it
        self._arrivals: queue.SimpleQueue[tuple[socket.socket, Any]] = queue.SimpleQueue()
        self._wake_read, self._wake_write = socket.socketpair()
        self._wake_write.setblocking(False)
        self._heads = threading.Thread(target=self._wait_for_heads, name="http-heads", daemon=True)
        self._heads.start()

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            log.warning("http connection refused: too many open", extra={"fields": {"client": _client(client_address)}})
            self.shutdown_request(request)
            return
        with self._deadlines_lock:
            self._deadlines[request] = time.monotonic() + self.timeout_s
        self._arrivals.put((request, client_address))
        try:
            self._wake_write.send(b"\0")
        except OSError:  # its buffer full of wake-ups already (or closed at shutdown): it wakes anyway
            pass

    def _wait_for_heads(self) -> None:
        """Hold each connection until its request head has arrived: then answer a probe at once, or hand
        the request to the pool. A head still arriving is looked at again every ``_RECHECK_S`` (its
        unread bytes would keep the selector awake); the deadline watchdog cuts those that take too long."""
        selector = selectors.DefaultSelector()
        selector.register(self._wake_read, selectors.EVENT_READ)
        arriving: dict[socket.socket, Any] = {}  # head incomplete at the last look -> client address
        while not self._closed.is_set():
            ready = selector.select(_RECHECK_S if arriving else 0.25)
            looked_at = dict(arriving)
            arriving.clear()
            for key, _ in ready:
                if key.fileobj is self._wake_read:
                    self._wake_read.recv(4096)
                    while not self._arrivals.empty():
                        sock, client_address = self._arrivals.get()
                        sock.setblocking(False)
                        selector.register(sock, selectors.EVENT_READ, client_address)
                else:
                    selector.unregister(key.fileobj)
                    looked_at[key.fileobj] = key.data  # type: ignore[index]
            for sock, client_address in looked_at.items():
                if self._head_arrived(sock, client_address) is None:
                    arriving[sock] = client_address

    def _head_arrived(self, sock: socket.socket, client_address: Any) -> bool | None:
        """Probe answered, request handed to the pool or connection closed: True; head still arriving: None."""
        try:
            head = sock.recv(_HEAD_BYTES, socket.MSG_PEEK)
        except BlockingIOError:
            return None
        except OSError:
            head = b""
        if head and b"\r\n\r\n" not in head and len(head) < _HEAD_BYTES:
            return None
        if head and self._answer_probe(sock, head):
            self._close(sock)
        elif head:
            sock.setblocking(True)
            self._pool.submit(self._handle, sock, client_address)
        else:  # the client went away, or the watchdog cut it off
            self._close(sock)
        return True

    def _answer_probe(self, sock: socket.socket, head: bytes) -> bool:
        """Answer ``GET`` of a probe path from its head; False for any other request."""
        method, _, rest = head.partition(b" ")
        target = rest.split(b" ", 1)[0].split(b"?", 1)[0]
        answer = self.probes(target.decode("latin-1")) if method == b"GET" and self.probes is not None else None
        if answer is None:
            return False
        code, body = answer
        sock.recv(len(head))  # read what was peeked: closing with unread bytes would reset the connection
        reason = "OK" if code == 200 else "Service Unavailable"
        response = (
            f"HTTP/1.0 {code} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode() + body
        try:
            sock.send(response)  # a few dozen bytes into an empty send buffer: it never blocks
        except OSError:
            pass
        return True

    def _handle(self, request: socket.socket, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self._close(request)

    def _close(self, request: socket.socket) -> None:
        with self._deadlines_lock:
            self._deadlines.pop(request, None)
        self.shutdown_request(request)
        self._slots.release()

    def _cut_overdue(self) -> None:
        # a blocked read or write returns once its socket is shut down; the handler then ends
        while not self._closed.wait(min(0.25, self.timeout_s / 4)):
            now = time.monotonic()
            with self._deadlines_lock:
                overdue = [sock for sock, deadline in self._deadlines.items() if deadline <= now]
                for sock in overdue:
                    del self._deadlines[sock]
            for sock in overdue:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:  # already closed by its handler
                    pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        fields = {"client": _client(client_address), "error": type(exc).__name__}
        if isinstance(exc, OSError):  # the client went away or was too slow: its loss, not ours
            log.info("http client disconnected", extra={"fields": fields})
        else:
            log.error("http request failed", extra={"fields": fields}, exc_info=True)

    def server_close(self) -> None:
        self._closed.set()
        self._wake_write.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        BaseServer.server_close(self)  # (ThreadingMixIn's would join threads it never started)
        self.socket.close()


def _client(client_address: Any) -> str:
    return f"{client_address[0]}:{client_address[1]}" if isinstance(client_address, tuple) else str(client_address)


def serve(
    host: str,
    port: int,
    registry: CollectorRegistry,
    health: Health,
    status: Callable[[], dict | bytes],
    models: ModelCollector | None = None,
    status_endpoint: bool = True,
    **bounds: Any,
) -> BoundedHTTPServer:
    """Start the HTTP server on a daemon thread; ``server.server_address`` has the bound port.

    ``/metrics`` is the registry's text, then the per-model series of ``models`` (written by it);
    ``status`` and ``models`` read what the consume loop published (`StatusView`), never its live
    state; ``status`` gives ``/status``'s document, or its body (`StatusView.status_body`). ``/status`` answers 404 when ``status_endpoint`` is off. ``bounds`` go to
    `BoundedHTTPServer` (threads, max_connections, timeout_s)."""

    class Handler(BaseHTTPRequestHandler):
        timeout = bounds.get("timeout_s", 10.0)  # each read and write of the socket, at most

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                body = generate_latest(registry)
                self._send(200, body + models.exposition() if models is not None else body, CONTENT_TYPE_LATEST)
            elif (answer := probes(path)) is not None:  # answered before the pool as a rule; here if reached
                self._send(*answer)
            elif path == "/status" and status_endpoint:
                doc = status()
                self._send(200, doc if isinstance(doc, bytes) else status_json(doc), "application/json")
            else:
                self._send(404, b"not found\n")

        def _send(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:  # scrapes are not worth a log line each
            pass

    def probes(path: str) -> tuple[int, bytes] | None:
        """What the probes answer: before the pool (``BoundedHTTPServer``), so slow clients never delay them."""
        if path == "/healthz":
            return (200, b"ok\n") if health.alive else (503, b"stalled\n")
        if path == "/readyz":
            return (200, b"ready\n") if health.ready else (503, b"not ready\n")
        return None

    server = BoundedHTTPServer((host, port), Handler, probes=probes, **bounds)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server
