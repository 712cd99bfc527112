"""``streamdrift status``: a terminal table of the monitored models.

It reads a running worker's ``/status`` endpoint (default: ``metrics_host``
and ``metrics_port`` of the settings, ``127.0.0.1`` when the worker listens on
every interface) or, with ``--snapshots DIR``, the snapshots a worker wrote
there, or, with ``--state-topic``, the state topic (``topics.state``): the
committed state of every partition of the whole group, from one place. A
worker's view is its own partitions: with several workers, ask each, or read
the state topic. All give the same shape::

    {"partitions": {"<p>": {"offsets": {"<topic>": <next offset>}, "models": {"<model_id>": <summary>}}}}

and, from a worker that found misrouted records since it started, ``"misrouted": {"<topic>": <count>}``
(printed under the table: ``core/routing.py``).

where a summary is ``ModelMonitor.summary()``; ``--json`` prints that data
instead of the table. Reading snapshots needs the worker's detection settings
(same ``--config`` / ``STREAMDRIFT_MONITOR__*``): a snapshot made under other
settings is refused, as the worker would refuse it. Nothing is ever written (the
state topic is read without a consumer group's commits).

Examples
--------
>>> summary = {"predictions_total": 1200, "feedback_total": 600, "reference_ready": True,
...            "reference_source": "profile", "drift_events": {"prediction_drift": 1, "data_drift": 2},
...            "feature_scores": {"income": 0.31, "age": 0.02}, "type_mismatches": {"age": 3},
...            "quality": {"age": {"missing_rate": 0.35, "missing_rate_ref": 0.05}}, "last_event_time": 1700000000.5,
...            "task": "classification", "performance": {"window": {"accuracy": 0.79}}, "reference_accuracy": 0.84}
>>> print(render({"partitions": {"1": {"offsets": {}, "models": {"credit-risk": summary}}}}, MonitorSettings()))
MODEL        PARTITION  PREDICTIONS  FEEDBACK  REFERENCE        WINDOW METRIC               DRIFT EVENTS                     LAST DRIFT  TOP FEATURE    PSI  TYPE MISMATCHES  QUALITY FLAGS          LAST EVENT
credit-risk          1         1200       600  ready (profile)  accuracy 0.790 (ref 0.840)  data_drift=2 prediction_drift=1  -           income       0.310  age=3            age:missing_rate=0.35  2023-11-14T22:13:20.500Z
"""

from __future__ import annotations

import argparse
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import orjson

from streamdrift.core.config import MonitorSettings
from streamdrift.core.dormant import Dormant
from streamdrift.core.errors import SnapshotError, StreamdriftError
from streamdrift.core.monitor import QUALITY_CHECKS, ModelMonitor, monitor_factory
from streamdrift.core.policy import KINDS, rfc3339
from streamdrift.core.protocols import State
from streamdrift.runtime.checkpoint import LocalSnapshotStore
from streamdrift.runtime.settings import Settings

COLUMNS = (
    "MODEL",
    "PARTITION",
    "PREDICTIONS",
    "FEEDBACK",
    "REFERENCE",
    "WINDOW METRIC",
    "DRIFT EVENTS",
    "LAST DRIFT",
    "TOP FEATURE",
    "PSI",
    "TYPE MISMATCHES",
    "QUALITY FLAGS",
    "LAST EVENT",
)
NUMERIC = frozenset({"PARTITION", "PREDICTIONS", "FEEDBACK", "PSI"})  # right-aligned
SHOWN = 3  # features listed per cell; the rest are counted
_SNAPSHOT_FILE = re.compile(r"^partition-(\d+)\.snapshot$")


# -- reading ---------------------------------------------------------------


def default_url(settings: Settings) -> str:
    host = settings.metrics_host if settings.metrics_host not in ("", "0.0.0.0", "::") else "127.0.0.1"
    if settings.metrics_port == 0:
        raise StreamdriftError(
            "metrics_port is 0 (a free port picked at start): pass the worker's address "
            "with --url http://HOST:PORT, as printed in its 'worker started' log line"
        )
    return f"http://{'[' + host + ']' if ':' in host else host}:{settings.metrics_port}"


def status_url(url: str) -> str:
    """The ``/status`` endpoint of a worker address.

    >>> status_url("127.0.0.1:9108"), status_url("http://w1:9108/"), status_url("http://w1:9108/status")
    ('http://127.0.0.1:9108/status', 'http://w1:9108/status', 'http://w1:9108/status')
    """
    if "://" not in url:
        url = "http://" + url
    return url if url.rstrip("/").endswith("/status") else url.rstrip("/") + "/status"


def from_worker(url: str, timeout_s: float = 5.0) -> dict:
    """The status a running worker serves at ``url``."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as answer:
            body = answer.read()
    except urllib.error.HTTPError as exc:
        raise StreamdriftError(f"{url} answered HTTP {exc.code}: is this a streamdrift worker's address?") from None
    except (urllib.error.URLError, OSError) as exc:
        raise StreamdriftError(
            f"cannot reach a worker at {url}: {getattr(exc, 'reason', exc)}. Is it running? "
            "Pass its address with --url http://HOST:PORT (its metrics_host and "
            "metrics_port), or read its snapshots with --snapshots DIR."
        ) from None
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise StreamdriftError(f"{url} did not answer JSON: is this a streamdrift worker's address?") from None
    if not isinstance(data, dict) or not isinstance(data.get("partitions"), dict):
        raise StreamdriftError(f"{url} answered JSON without 'partitions': not a streamdrift worker's /status")
    return data


def from_snapshots(directory: Path, settings: Settings) -> dict:
    """The status the snapshots in ``directory`` hold, shaped like a worker's ``/status``.

    It does not connect to Kafka, so it checks the files' group and topics but not their cluster."""
    directory = Path(directory)
    if not directory.is_dir():
        raise StreamdriftError(f"snapshot directory {directory} does not exist (--snapshots)")
    found = sorted((int(m.group(1)), f) for f in directory.iterdir() if (m := _SNAPSHOT_FILE.match(f.name)))
    if not found:
        raise StreamdriftError(
            f"no snapshots (partition-N.snapshot) in {directory}: has a worker with "
            f"snapshot_dir={directory} written a checkpoint yet?"
        )
    store = LocalSnapshotStore(directory, settings.state_seal())
    new_monitor = monitor_factory(
        settings.monitor, settings.models
    )  # the worker's per-model settings and reference profiles
    partitions = {}
    for p, _ in found:
        try:
            snapshot = store.load(p)
        except SnapshotError as exc:
            raise SnapshotError(
                f"{exc}\n`streamdrift status` only reads snapshots: give it the worker's detection "
                "settings (the same --config FILE or STREAMDRIFT_MONITOR__* environment)."
            ) from None
        assert snapshot is not None
        models = {m: _summary(m, st, new_monitor) for m, st in snapshot.models.items()}
        partitions[str(p)] = {"offsets": snapshot.offsets, "models": models}
    return {"partitions": partitions}


def _summary(model_id: str, state: State | Dormant, new_monitor: Callable[..., ModelMonitor]) -> dict:
    """A model's summary as ``/status`` shows it: stored beside it in a state cache, else of its monitor."""
    summary = state.summary() if isinstance(state, Dormant) else new_monitor(model_id, state).summary()
    return summary.as_dict()


def from_state_topic(settings: Settings) -> dict:
    """The committed state of every partition in the state topic, shaped like a worker's ``/status``;
    its records are checked against the cluster id it reads from the broker, as the worker's are."""
    from streamdrift.runtime import kafka  # the Kafka clients, loaded only when asked for
    from streamdrift.runtime.statetopic import StateTopic

    name = settings.topics.state
    client = kafka.admin(settings)
    counts = kafka.partition_counts(client, [name])
    if name not in counts:
        raise StreamdriftError(f'state topic {name} does not exist (topics.state): is state_store = "kafka"?')
    new_monitor = monitor_factory(settings.monitor, settings.models)
    seal = settings.state_seal(kafka.cluster_id(client))  # connected anyway: the cluster is checked too
    try:
        restored = StateTopic(settings, seal).restore(dict.fromkeys(range(counts[name])))
    except SnapshotError as exc:
        raise SnapshotError(
            f"{exc}\n`streamdrift status` only reads the state: give it the worker's detection "
            "settings (the same --config FILE or STREAMDRIFT_MONITOR__* environment)."
        ) from None
    partitions = {}
    for p, (snapshot, _) in sorted(restored.items()):
        if snapshot is not None:
            models = {m: _summary(m, st, new_monitor) for m, st in snapshot.models.items()}
            partitions[str(p)] = {"offsets": snapshot.offsets, "models": models}
    return {"partitions": partitions}


# -- the table -------------------------------------------------------------


def rows(data: dict, settings: MonitorSettings) -> list[dict[str, str]]:
    """One row per model, by model then partition; every cell a string."""
    out = [
        _row(model_id, int(p), s, settings)
        for p, part in data["partitions"].items()
        for model_id, s in part["models"].items()
    ]
    return sorted(out, key=lambda r: (r["MODEL"], int(r["PARTITION"])))


def _row(model_id: str, partition: int, s: dict, settings: MonitorSettings) -> dict[str, str]:
    drift = s["drift_events"]
    kinds = [k for k in KINDS if drift.get(k)] + sorted(k for k in drift if k not in KINDS and drift[k])
    scores = s["feature_scores"]
    top = min(scores.items(), key=lambda kv: (-kv[1], kv[0])) if scores else None
    mismatches = sorted(((-n, f"{f}={n}") for f, n in s["type_mismatches"].items() if n))
    return {
        "MODEL": model_id,
        "PARTITION": str(partition),
        "PREDICTIONS": str(s["predictions_total"]),
        "FEEDBACK": str(s["feedback_total"]),
        "REFERENCE": f"{'ready' if s['reference_ready'] else 'warming up'} ({s.get('reference_source', 'warm-up')})",
        "WINDOW METRIC": window_metric(s),
        "DRIFT EVENTS": " ".join(f"{k}={drift[k]}" for k in kinds) or "-",
        "LAST DRIFT": _last_drift(s.get("last_drift")),
        "TOP FEATURE": top[0] if top else "-",
        "PSI": f"{top[1]:.3f}" if top else "-",
        "TYPE MISMATCHES": _listed([m for _, m in mismatches]),
        "QUALITY FLAGS": _listed(quality_flags(s.get("quality", {}), settings)),
        "LAST EVENT": rfc3339(s["last_event_time"]) if s["last_event_time"] else "-",
    }


def _last_drift(last: dict | None) -> str:
    if not last:
        return "-"
    at = last["detected_at"]
    return f"{last['kind']} {rfc3339(at) if isinstance(at, (int, float)) else at}"


def window_metric(s: dict) -> str:
    """The headline metric over the sliding window: accuracy (and the reference's) or RMSE.

    >>> window_metric({"task": "classification", "performance": {"window": {"accuracy": 0.8125}},
    ...                "reference_accuracy": 0.85})
    'accuracy 0.812 (ref 0.850)'
    >>> window_metric({"task": "regression", "performance": {"window": {"rmse": 12.5}}})
    'rmse 12.5'
    """
    window = (s.get("performance") or {}).get("window") or {}
    if s.get("task") == "classification" and window.get("accuracy") is not None:
        reference = s.get("reference_accuracy")
        return f"accuracy {window['accuracy']:.3f}" + (f" (ref {reference:.3f})" if reference is not None else "")
    if s.get("task") == "regression" and window.get("rmse") is not None:
        return f"rmse {window['rmse']:.4g}"
    return "-"


def quality_flags(quality: dict[str, dict[str, float]], settings: MonitorSettings) -> list[str]:
    """``feature:check=rate`` for each data-quality rate of the latest window over its bound, worst first.

    >>> quality_flags({"age": {"missing_rate": 0.35, "missing_rate_ref": 0.05, "invalid_rate": 0.0,
    ...                        "out_of_range_rate": 0.08, "new_category_rate": 0.0}}, MonitorSettings())
    ['age:missing_rate=0.35', 'age:out_of_range_rate=0.08']
    """
    flags = []
    for feature, q in quality.items():
        for check, key, bound_name, relative in QUALITY_CHECKS:
            if key not in q:
                continue
            excess = q[key] - q.get("missing_rate_ref", 0.0) if relative else q[key]
            bound = getattr(settings, bound_name)
            if excess > bound:
                flags.append((-excess / bound, feature, f"{feature}:{check}={q[key]:.2f}"))
    return [flag for *_, flag in sorted(flags)]


def _listed(items: list[str]) -> str:
    shown = " ".join(items[:SHOWN])
    return (shown + (f" +{len(items) - SHOWN} more" if len(items) > SHOWN else "")) or "-"


def table(records: list[dict[str, str]], columns: tuple[str, ...] = COLUMNS) -> str:
    """Columns padded to their widest cell, two spaces apart; numbers right-aligned."""
    widths = {c: max([len(c)] + [len(r[c]) for r in records]) for c in columns}

    def line(cells: dict[str, str]) -> str:
        return "  ".join(
            cells[c].rjust(widths[c]) if c in NUMERIC else cells[c].ljust(widths[c]) for c in columns
        ).rstrip()

    return "\n".join([line({c: c for c in columns})] + [line(r) for r in records])


def render(data: dict, settings: MonitorSettings) -> str:
    records = rows(data, settings)
    out = table(records) if records else "no models monitored yet"
    return out + "".join(f"\n{line}" for line in misrouted_lines(data.get("misrouted") or {}))


def misrouted_lines(misrouted: dict[str, int]) -> list[str]:
    """What a worker's ``/status`` says of misrouted records (``core/routing.py``), one line per topic.

    >>> for line in misrouted_lines({"feedback": 1234, "predictions": 0}):
    ...     print(line[:72])
    misrouted: 1234 records of feedback were on another partition than murmu
    """
    return [
        f"misrouted: {n} records of {topic} were on another partition than murmur2 maps their model to; produce "
        "them with partitioner=murmur2_random (librdkafka clients) or the Java client's default"
        for topic, n in sorted(misrouted.items())
        if n
    ]


# -- command line ----------------------------------------------------------


def add_parser(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    doc = "Show the monitored models as a table, from a running worker, its snapshots or the state topic."
    p = subparsers.add_parser("status", help=doc, description=doc, parents=[common])
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--url",
        help="worker address, e.g. http://10.0.0.7:9108 (default: metrics_host and metrics_port of the settings)",
    )
    source.add_argument(
        "--snapshots",
        type=Path,
        metavar="DIR",
        help="read the snapshots in DIR instead (needs the worker's [monitor] settings)",
    )
    source.add_argument(
        "--state-topic",
        action="store_true",
        help="read the committed state of every partition from the state topic (topics.state; "
        "needs the worker's [monitor] settings)",
    )
    p.add_argument("--json", action="store_true", help="print the data as JSON instead of a table")
    p.add_argument("--timeout-s", type=float, default=5.0, help="HTTP timeout")
    return p


def run(settings: Settings, args: argparse.Namespace) -> int:
    if args.snapshots is not None:
        data = from_snapshots(args.snapshots, settings)
    elif args.state_topic:
        data = from_state_topic(settings)
    else:
        url = status_url(args.url or default_url(settings))
        data = from_worker(url, args.timeout_s)
        if not data.get("ready", True):
            print(f"note: the worker at {url} is not ready (partitions being assigned or restored)", file=sys.stderr)
    if args.json:
        print(orjson.dumps(data, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2).decode())
    else:
        print(render(data, settings.monitor))
    return 0
