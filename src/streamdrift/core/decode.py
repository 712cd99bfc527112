"""Decode raw messages into columnar per-model batches, or reject them.

The first step of the data flow. `decode_predictions` and `decode_feedback`
take the messages of one poll (any mix of partitions), validate each value
against the public contract (``schemas/prediction.schema.json``,
``schemas/feedback.schema.json``) and group what passes into one batch per
(model_id, partition), rows in input order, batches in order of first
appearance (a model's predictions bringing more than ``MAX_FEATURES`` feature
names, or ``MAX_ATTRIBUTIONS`` attribution names, between them come as
consecutive batches of at most that many each). What fails comes back as a `Rejected` with a one-line reason
naming the field, for the dead-letter topic; a bad message never raises.

Accepted messages
-----------------
value
    A UTF-8 JSON object. Unknown top-level fields are ignored.
key
    ``None``, or the UTF-8 bytes of the event's ``model_id``.
event_id
    String of 1 to 256 characters (code points).
model_id
    1 to 128 of ``A-Z a-z 0-9 . _ : -``, other than ``__other__`` (the model id the
    exporter sums the models over ``metrics_max_models`` under).
model_version
    Optional: null or a string of 1 to 128 characters, without U+0000 (NUL), and
    neither ``__none__`` nor ``__other__`` (see below).
timestamp
    RFC 3339 date-time with ``Z`` or a ``±hh:mm`` offset (``T``/``t``,
    ``Z``/``z``, optional fraction, no leap second), year 1970 to 9999; or
    epoch seconds in ``[0, 253402300800)``. Decoded to float epoch seconds.
features (prediction)
    Object of at most 1000 names (1 to 256 characters) to number, string,
    boolean or null.
prediction (optional in feedback), label (feedback)
    String, number or boolean. A string is a class name: without U+0000 (NUL), and not
    ``__other__`` (see below).
value (optional, feedback)
    Number: what the graded prediction was worth to the business (revenue,
    loss, minutes), summed per model and version by the monitors.
score (optional)
    Number in [0, 1]: probability of the positive class.
scores (optional, prediction)
    Object of class to number in [0, 1]; class names as for ``prediction``.
segment (optional, prediction)
    Object of at most 32 names to string, number or boolean; a string value
    without U+0000 (NUL), and neither ``__other__`` nor ``__missing__`` (see below).

A number is a JSON number: ``1`` and ``1.0`` are numbers, ``true`` is not,
and NaN or infinity cannot be written in JSON at all.

Class names keep distinct classes distinct: the metrics hold them in numpy's fixed-width
strings, which drop trailing NULs (``"a\x00"`` would be counted as ``"a"``), and
``__other__`` is the class the classes over ``max_classes`` are counted in (a user's
``"__other__"`` would be counted with them). Neither is a class the contract accepts.
Model versions likewise: the metrics per version hold them in the same strings, rows
without a version are counted as ``__none__`` and versions over ``max_versions`` as
``__other__``. Segment values likewise: the segment metrics hold them in the same
strings, count the values over ``max_segments`` as ``__other__`` and events without
the attribute as ``__missing__``.

Bounds (``config.InputBounds``)
-------------------------------
Beyond the types, a value must stay within bounds that keep one event from
damaging a model for good:

- a number (feature value, prediction, label, value) has a magnitude of at most
  ``max_abs_number`` (1e15): squares and sums of squares stay finite;
- a string (feature value, prediction, label, segment name or value, class
  name in ``scores``) has at most ``max_string_chars`` characters (1024);
- the event time is at most ``max_event_time_skew_s`` (one day) ahead of the
  record's Kafka timestamp (``RawMessage.timestamp_ms``): one event stamped in
  the year 9999 would otherwise move the model's event-time clock there. With
  ``require_record_time`` (the worker's engine), a record without a Kafka
  timestamp (0 or less) is rejected, since its event time cannot be bounded: a
  Kafka 4 broker stamps every record, so only a producer that sets 0 on purpose
  writes one. Without it (replay files, the Python API: no Kafka timestamps)
  such a record is not judged.

Reasons name the field and the rule (``scores`` and ``segment``, not the class or
segment name, which are users' values too), and show the offending value only with
``redact_values = false``. String feature values longer than
``max_category_length`` (or all of them, with ``hash_categories``) reach the
monitors as ``#`` and 16 hex digits of their SHA-256 (HMAC-SHA256 under
``hash_salt`` where set), never in clear: a hash
keeps distinct values distinct, where a truncation would merge values sharing a
prefix and keep that prefix in clear.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from datetime import date
from itertools import chain
from typing import Any

import numpy as np
import orjson

from streamdrift.core.config import InputBounds
from streamdrift.core.metrics.labels import MISSING, OTHER
from streamdrift.core.records import FeatureColumn, FeedbackBatch, PredictionBatch, RawMessage, Rejected
from streamdrift.core.sketch import NO_VERSION, OTHER_VERSION

try:  # the C reader of prediction polls (setup.py builds it where a compiler is)
    from streamdrift.core import _speedups
except ImportError:  # built without one: the same batches, read by orjson and checked here
    # mypy types the name as the module (its stub, _speedups.pyi); None means not built, checked where used
    _speedups = None  # type: ignore[assignment]
SPEEDUPS = _speedups is not None

MAX_EVENT_ID_CHARS = 256
MAX_MODEL_VERSION_CHARS = 128
MAX_FEATURES = 1000
MAX_FEATURE_NAME_CHARS = 256
MAX_SEGMENT_ATTRIBUTES = 32
MAX_ATTRIBUTIONS = 1000  # features an event's attributions may name
# 10000-01-01T00:00:00Z: the first instant RFC 3339's four-digit years cannot write.
EPOCH_SECONDS_END = 253_402_300_800

# the model id under which the exporter (runtime.exporter) sums the models over metrics_max_models: no event's
OTHER_MODELS = "__other__"
# the contract's model_id (schemas/), also checked by api, settings and replay; MODEL_ID.pattern is not shown
MODEL_ID_PATTERN = "[A-Za-z0-9._:-]{1,128}"
MODEL_ID = re.compile(rf"(?!{OTHER_MODELS}\Z){MODEL_ID_PATTERN}")
_RFC3339 = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(\.\d+)?(?:[Zz]|([+-])(\d\d):(\d\d))",
    re.ASCII,
)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()

# orjson builds exact types, so `type(v) in ...` is exact and keeps bool out of numbers.
_NUMBER = frozenset({int, float})
_SCALAR = frozenset({str, int, float, bool})
_NUL = "\x00"
_OTHER_RULE = "the class streamdrift counts classes over max_classes in"
_VERSION_NUL_RULE = "field 'model_version' must be a version name without U+0000 (NUL)"
_RESERVED_VERSION_RULES = {
    NO_VERSION: f"field 'model_version' must not be '{NO_VERSION}', the version streamdrift counts events without one in",
    OTHER_VERSION: (
        f"field 'model_version' must not be '{OTHER_VERSION}', the version streamdrift counts versions over max_versions in"
    ),
}
_RESERVED_VERSIONS = frozenset(_RESERVED_VERSION_RULES)
_SEGMENT_NUL_RULE = "field 'segment' has a value with U+0000 (NUL)"
_RESERVED_SEGMENT_RULES = {
    OTHER: f"field 'segment' has the value '{OTHER}', the segment streamdrift counts values over max_segments in",
    MISSING: f"field 'segment' has the value '{MISSING}', the segment streamdrift counts events without the attribute in",
}
_FEATURE_VALUE = frozenset({str, int, float, bool, type(None)})
_NUMERIC_VALUE = frozenset({int, float, type(None)})
_JSON_TYPE = {
    dict: "object",
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}
_MISSING = object()
_NAN = float("nan")
DEFAULT_BOUNDS = InputBounds()


class _Invalid(Exception):
    """A message breaks the contract; never leaves this module.

    ``redacted`` names the field and the rule; ``clear`` (when given) says the same and
    quotes the offending value, for ``redact_values = false``.
    """

    def __init__(self, redacted: str, clear: str | None = None):
        super().__init__(redacted)
        self.redacted = redacted
        self.clear = clear

    def reason(self, redact: bool) -> str:
        return self.redacted if redact or self.clear is None else self.clear


def decode_predictions(
    messages: Sequence[RawMessage], bounds: InputBounds = DEFAULT_BOUNDS, *, require_record_time: bool = False
) -> tuple[list[PredictionBatch], list[Rejected]]:
    """Decode prediction messages into one batch per (model_id, partition), or consecutive ones where its
    events bring more feature or attribution names between them than one event may hold (``_runs_within_names``).

    Parameters
    ----------
    messages
        Raw messages of the predictions topic, in the order received.
    bounds
        What values and event times are accepted, and what reasons show.
    require_record_time
        Reject a record without a Kafka timestamp (``timestamp_ms`` 0 or less).

    Returns
    -------
    tuple
        The batches, in order of first appearance, and the rejected messages.

    Examples
    --------
    >>> from streamdrift.core.records import RawMessage
    >>> values = [
    ...     b'{"event_id": "e1", "model_id": "m1", "timestamp": 1700000000,'
    ...     b' "features": {"x": 1.5}, "prediction": 1, "score": 0.9}',
    ...     b'{"event_id": "e2", "model_id": "m1", "timestamp": "2023-11-14T22:13:21Z",'
    ...     b' "features": {"x": null, "c": "a"}, "prediction": 0}',
    ...     b'{"event_id": "e3", "model_id": "m1", "timestamp": 1700000002,'
    ...     b' "features": {}, "prediction": 1, "score": true}',
    ...     None,
    ... ]
    >>> messages = [RawMessage("predictions", 0, 10 + i, b"m1", v) for i, v in enumerate(values)]
    >>> batches, rejected = decode_predictions(messages)
    >>> b = batches[0]
    >>> b.model_id, b.partition, len(b), b.offsets.tolist()
    ('m1', 0, 2, [10, 11])
    >>> b.timestamps.tolist(), b.scores.tolist()
    ([1700000000.0, 1700000001.0], [0.9, nan])
    >>> b.features
    {'x': [1.5, None], 'c': [None, 'a']}
    >>> for r in rejected:
    ...     print(r.message.offset, r.reason)
    12 field 'score' must be a number in [0, 1], got boolean
    13 tombstone: message has no value
    """
    return _decode(messages, _prediction_row, _prediction_batch, bounds, require_record_time)


def decode_feedback(
    messages: Sequence[RawMessage], bounds: InputBounds = DEFAULT_BOUNDS, *, require_record_time: bool = False
) -> tuple[list[FeedbackBatch], list[Rejected]]:
    """Decode feedback messages into one batch per (model_id, partition).

    Parameters
    ----------
    messages
        Raw messages of the feedback topic, in the order received.
    bounds
        What values and event times are accepted, and what reasons show.
    require_record_time
        Reject a record without a Kafka timestamp (``timestamp_ms`` 0 or less).

    Returns
    -------
    tuple
        The batches, in order of first appearance, and the rejected messages.
        ``predictions`` holds None and ``scores`` NaN where a feedback event
        does not carry the prediction it grades.
    """
    return _decode(messages, _feedback_row, _feedback_batch, bounds, require_record_time)


def _decode(
    messages: Sequence[RawMessage], parse, build, bounds: InputBounds, require_record_time: bool
) -> tuple[list, list[Rejected]]:
    """Validate and group: the C reader's whole-poll path when it can vouch for every message, else row by row."""
    if _speedups is not None and len(messages) >= _FAST_MIN:
        fast = (_decode_parsed if parse is _prediction_row else _decode_parsed_feedback)(
            messages, bounds, require_record_time
        )
        if fast is not None:
            return fast, []  # the C reader's path hides long categories in its columns (``_hide_long``)
    batches, rejected = _decode_rows(messages, parse, build, bounds, require_record_time)
    if parse is _prediction_row:
        _hide_long_categories(batches, bounds)
    return batches, rejected


def _decode_rows(
    messages: Sequence[RawMessage],
    parse,
    build,
    bounds: InputBounds = DEFAULT_BOUNDS,
    require_record_time: bool = False,
) -> tuple[list, list[Rejected]]:
    """Validate each message with ``parse`` into a row tuple; group rows per (model_id, partition).

    The reference path: it names the first breach of each bad message. Rows
    are kept as tuples and transposed into columns once per batch.
    """
    groups: dict[tuple[str, int], list[tuple]] = {}
    rejected: list[Rejected] = []
    keys: dict[str, bytes] = {}
    for message in messages:
        try:
            event = _load(message.value)
            event_id, model_id, version, timestamp = _header(event, message.key, keys)
            _check_skew(timestamp, message.timestamp_ms, bounds, require_record_time)
            row = (message.offset, event_id, version, timestamp, event["timestamp"], *parse(event, bounds))
        except _Invalid as exc:
            rejected.append(Rejected(message, exc.reason(bounds.redact_values)))
            continue
        group = groups.get((model_id, message.partition))
        if group is None:
            group = groups[(model_id, message.partition)] = []
        group.append(row)
    runs = _runs_within_names if parse is _prediction_row else _whole
    batches = [build(model_id, partition, run) for (model_id, partition), rows in groups.items() for run in runs(rows)]
    return batches, rejected


def _whole(rows: list[tuple]) -> list[list[tuple]]:
    return [rows]


def _runs_within_names(rows: list[tuple]) -> list[list[tuple]]:
    """One model's prediction rows cut into consecutive runs of at most ``MAX_FEATURES`` feature names and
    ``MAX_ATTRIBUTIONS`` attribution names each.

    A batch holds a column per name and a value per row (the monitor makes the attributions' columns):
    events whose names are all new (an id in a name) would make it rows x names, quadratic in the rows
    (1,000 events of 100 new feature names: 11 s and 1 GiB; of attribution names: 18 s). A run ends before
    a row that would bring its names over a bound, as one event may hold that many; the monitors' state
    does not depend on where batches end (``tests/unit/test_batch_split.py``).
    """
    features, attributed = _Names(MAX_FEATURES), _Names(MAX_ATTRIBUTIONS)
    runs, start = [], 0
    for i, row in enumerate(rows):
        over_features = features.over(row[_FEATURES_AT])
        over_attributions = attributed.over(row[_ATTRIBUTIONS_AT] or {})
        if (over_features or over_attributions) and i > start:
            runs.append(rows[start:i])
            start = i
            features.restart(row[_FEATURES_AT])
            attributed.restart(row[_ATTRIBUTIONS_AT] or {})
    runs.append(rows[start:])
    return runs


class _Names:
    """The distinct names of a run of rows, up to a bound."""

    def __init__(self, bound: int):
        self.bound = bound
        self.names: set[str] = set()

    def over(self, row: dict) -> bool:
        """Add the row's names; whether the run now holds more than the bound."""
        if row.keys() <= self.names:  # the usual case: names seen in this run already
            return False
        self.names.update(row)
        return len(self.names) > self.bound

    def restart(self, row: dict) -> None:
        self.names = set(row)


# where a prediction row holds its features and its attributions (offset, event_id, version, times: _decode_rows)
_FEATURES_AT, _ATTRIBUTIONS_AT = 5, 10


def _prediction_row(event: dict, bounds: InputBounds = DEFAULT_BOUNDS) -> tuple:
    return (
        _features(event, bounds),
        _class(event, "prediction", bounds),
        _score(event),
        _class_scores(event, bounds),
        _segment(event, bounds),
        _attributions(event, bounds),
    )


def _feedback_row(event: dict, bounds: InputBounds = DEFAULT_BOUNDS) -> tuple:
    label = _class(event, "label", bounds)  # checked in this order: the first failure is the reason given
    prediction = _class(event, "prediction", bounds) if "prediction" in event else None
    return label, prediction, _score(event), _value(event, bounds)


def _prediction_batch(model_id: str, partition: int, rows: list[tuple]) -> PredictionBatch:
    offsets, event_ids, versions, times, written, features, predictions, scores, class_scores, segments, attributed = (
        zip(*rows)
    )
    columns, numeric = _feature_columns(features)
    return PredictionBatch(
        model_id=model_id,
        partition=partition,
        offsets=np.array(offsets, dtype=np.int64),
        event_ids=list(event_ids),
        model_versions=list(versions),
        timestamps=np.array(times, dtype=np.float64),
        timestamp_values=list(written),
        features=columns,
        predictions=list(predictions),
        scores=np.array(scores, dtype=np.float64),
        class_scores=list(class_scores),
        segments=list(segments),
        numeric_features=numeric,
        attributions=list(attributed) if any(a is not None for a in attributed) else None,
    )


def _feedback_batch(model_id: str, partition: int, rows: list[tuple]) -> FeedbackBatch:
    offsets, event_ids, versions, times, written, labels, predictions, scores, values = zip(*rows)
    return FeedbackBatch(
        model_id=model_id,
        partition=partition,
        offsets=np.array(offsets, dtype=np.int64),
        event_ids=list(event_ids),
        model_versions=list(versions),
        timestamps=np.array(times, dtype=np.float64),
        timestamp_values=list(written),
        labels=list(labels),
        predictions=list(predictions),
        scores=np.array(scores, dtype=np.float64),
        values=np.array(values, dtype=np.float64),
    )


# -- the C reader's path ---------------------------------------------------------
#
# ``_speedups`` reads a poll's values straight into columns; the contract's checks then run
# over whole columns (type sets, min/max of lengths, each *distinct* model id and version
# once, numpy range checks) instead of field by field per message. It only ever accepts: the
# moment the reader or a check has a doubt, ``_decode`` runs the reference path over the
# whole poll, which finds and names each culprit. So both paths accept the same messages and
# build the same batches (tests/unit/test_contracts.py and test_speedups.py check this).

_FAST_MIN = 8  # below this the reference path is as fast
_valid_model_ids: dict[str, bytes] = {}  # model ids matching the contract -> their Kafka key


def _checked_header(
    messages: Sequence[RawMessage],
    event_ids: list,
    model_ids: list,
    versions: list,
    written: list,
    bounds: InputBounds,
    require_record_time: bool = False,
) -> tuple[np.ndarray, set[str]] | None:
    """The checks of event_id, model_id (and key), model_version and timestamp over a poll's
    columns: the event times and the distinct model ids if all pass, else None.
    Raises TypeError for an unhashable model id or version."""
    distinct_versions = set(versions)
    distinct_models = set(model_ids)
    if (
        set(map(type, event_ids)) != {str}
        or min(map(len, event_ids)) == 0
        or max(map(len, event_ids)) > MAX_EVENT_ID_CHARS
    ):
        return None
    for version in distinct_versions:
        if version is not None and (type(version) is not str or not 0 < len(version) <= MAX_MODEL_VERSION_CHARS):
            return None
    if not distinct_versions.isdisjoint(_RESERVED_VERSIONS) or _NUL in "".join(v for v in distinct_versions if v):
        return None
    for model_id in distinct_models:
        if model_id not in _valid_model_ids:
            if type(model_id) is not str or MODEL_ID.fullmatch(model_id) is None:
                return None
            if len(_valid_model_ids) < 100_000:
                _valid_model_ids[model_id] = model_id.encode()
    if not _keys_match([m.key for m in messages], model_ids):
        return None
    times = _checked_timestamps(written)
    if times is None or not _within_skew(times, messages, bounds, require_record_time):
        return None
    return times, distinct_models


def _decode_parsed(
    messages: Sequence[RawMessage], bounds: InputBounds = DEFAULT_BOUNDS, require_record_time: bool = False
) -> list | None:
    """A poll of predictions read by ``_speedups`` into columns and checked: the batches of
    ``_decode_rows``, except that a feature column holding only floats and nulls
    is a float64 array, NaN for null (``records.column_values`` lists it again): a row of a view of the poll's
    block, which a monitor must copy to keep (it would pin the block), never change. None where the reader or a
    check has a doubt."""
    parsed = _speedups.predictions([m.value for m in messages])
    if parsed is None:
        return None
    event_ids, model_ids, versions, written, outputs, scores, class_scores, segments, names, block, lists = parsed
    head = _parsed_head(messages, event_ids, model_ids, versions, written, scores, bounds, require_record_time)
    if head is None:
        return None
    n = len(messages)
    if names and ("" in names or max(map(len, names)) > MAX_FEATURE_NAME_CHARS):
        return None
    floats = np.frombuffer(block, np.float64).reshape(len(names), n)
    if (np.abs(floats) > bounds.max_abs_number).any():  # NaN (null) compares False
        return None
    if not all(values is None or _in_bounds(values, bounds) for values in lists) or not _in_bounds(outputs, bounds):
        return None
    if not _class_names(outputs):
        return None
    try:  # rare fields: the reference checks, value by value, on the events that have them (None: no event has one)
        if class_scores is not None:
            class_scores = [None if d is None else _class_scores({"scores": d}, bounds) for d in class_scores]
        if segments is not None:
            segments = [None if d is None else _segment({"segment": d}, bounds) for d in segments]
    except _Invalid:
        return None
    lists = [None if values is None else _hide_long(values, bounds) for values in lists]
    numeric_lists = [None if values is None else _numeric_kind(values) for values in lists]
    columns = (floats, outputs, class_scores, segments, *lists)
    return _parsed_batches(
        _parsed_prediction_batch,
        messages,
        head,
        event_ids,
        model_ids,
        versions,
        written,
        columns,
        (names, numeric_lists),
    )


def _numeric_kind(values: list) -> bool | None:
    """Whether a poll's list of feature values holds only numbers and None (True), none of them (False: no
    group of its rows does), or some (None: each group's tells)."""
    types = set(map(type, values))
    if types <= _NUMERIC_VALUE:
        return True
    return None if types & _NUMERIC_VALUE else False


def _decode_parsed_feedback(
    messages: Sequence[RawMessage], bounds: InputBounds = DEFAULT_BOUNDS, require_record_time: bool = False
) -> list | None:
    """A poll of feedback read by ``_speedups`` and checked: the batches of ``_decode_rows``.
    None where the reader or a check has a doubt."""
    parsed = _speedups.feedback([m.value for m in messages])
    if parsed is None:
        return None
    event_ids, model_ids, versions, written, labels, carried, scores, values = parsed
    head = _parsed_head(messages, event_ids, model_ids, versions, written, scores, bounds, require_record_time)
    if head is None:
        return None
    if not _in_bounds(labels, bounds) or (carried is not None and not _in_bounds(carried, bounds)):
        return None
    if not _class_names(labels) or (carried is not None and not _class_names(carried)):
        return None
    value_array = np.full(len(messages), _NAN) if values is None else np.frombuffer(values, np.float64)
    if (np.abs(value_array) > bounds.max_abs_number).any():  # NaN (absent) compares False
        return None
    columns = (labels, carried, value_array)
    return _parsed_batches(_parsed_feedback_batch, messages, head, event_ids, model_ids, versions, written, columns)


def _parsed_head(
    messages: Sequence[RawMessage],
    event_ids: list,
    model_ids: list,
    versions: list,
    written: list,
    scores: bytes | None,
    bounds: InputBounds,
    require_record_time: bool = False,
) -> tuple | None:
    """The checks both kinds of parsed poll share: ``(times, distinct model ids, scores)``, or None."""
    header = _checked_header(messages, event_ids, model_ids, versions, written, bounds, require_record_time)
    if header is None:
        return None
    score_array = np.full(len(messages), _NAN) if scores is None else np.frombuffer(scores, np.float64)
    if ((score_array < 0) | (score_array > 1)).any():
        return None
    return (*header, score_array)


def _parsed_batches(
    build,
    messages: Sequence[RawMessage],
    head: tuple,
    event_ids: list,
    model_ids: list,
    versions: list,
    written: list,
    columns: tuple,
    fixed: tuple = (),
) -> list:
    """One batch per group of ``_groups``: the poll's columns (``columns``: one value per row each, or None)
    put in the groups' order once, each group's then a slice of them (a fleet's poll is hundreds of groups of a
    few rows: a copy of every column per group, each its own list comprehension or numpy call, cost more than
    the rows); ``fixed``: what every group's ``build`` is given as it is."""
    times, distinct_models, scores = head
    partitions = [m.partition for m in messages]
    order, groups = _groups(model_ids, partitions, distinct_models)
    offsets = np.array([m.offset for m in messages], dtype=np.int64)
    common = _in_order((offsets, times, scores, event_ids, versions, written), order)
    columns = _in_order(columns, order)
    return [build(model_id, partition, slice(a, b), common, columns, *fixed) for model_id, partition, a, b in groups]


def _in_order(columns: tuple, order: list[int] | None) -> tuple:
    """Each column (a list, an array, an array of rows of values, or None) with its values in ``order``."""
    if order is None:
        return columns
    index = np.array(order, dtype=np.intp)
    return tuple(
        None
        if column is None
        else list(map(column.__getitem__, order))
        if isinstance(column, list)
        else column[..., index]  # an array's values, or each row of a 2-d one
        for column in columns
    )


def _parsed_prediction_batch(
    model_id: str,
    partition: int,
    rows: slice,
    common: tuple,
    columns: tuple,
    names: list[str],
    numeric_lists: list[bool | None],
) -> PredictionBatch:
    """``columns``: the float block (a row per name, NaN where the name's values are a list), the outputs,
    class scores and segments (None where no event has any), then each name's list of values (None where its
    values are in the block).
    ``numeric_lists``: per name, whether the poll's list of values holds only numbers and None (None: some
    values are numbers, some not, so a group's may or may not be)."""
    block, outputs, class_scores, segments, *lists = columns
    features: dict[str, FeatureColumn] = {}
    numeric = []
    block = block[:, rows]  # a view: each float column a row of it
    for i, (name, values, kind) in enumerate(zip(names, lists, numeric_lists)):
        if values is None:
            features[name] = block[i]
            numeric.append(name)
        else:
            values = features[name] = values[rows]
            if kind is None:  # some of the poll's values numbers, some not: this group's
                kind = set(map(type, values)) <= _NUMERIC_VALUE
            if kind:
                numeric.append(name)
    return PredictionBatch(
        model_id=model_id,
        partition=partition,
        **_common_fields(common, rows),
        features=features,
        predictions=outputs[rows],
        class_scores=_values(class_scores, rows),
        segments=_values(segments, rows),
        numeric_features=frozenset(numeric),
    )


def _parsed_feedback_batch(model_id: str, partition: int, rows: slice, common: tuple, columns: tuple) -> FeedbackBatch:
    labels, carried, values = columns
    return FeedbackBatch(
        model_id=model_id,
        partition=partition,
        **_common_fields(common, rows),
        labels=labels[rows],
        predictions=_values(carried, rows),
        values=values[rows],
    )


def _common_fields(common: tuple, rows: slice) -> dict[str, Any]:
    """What a batch of either topic takes of the poll's columns common to both, for its ``rows``."""
    offsets, times, scores, event_ids, versions, written = common
    return {
        "offsets": offsets[rows],
        "event_ids": event_ids[rows],
        "model_versions": versions[rows],
        "timestamps": times[rows],
        "timestamp_values": written[rows],
        "scores": scores[rows],
    }


def _values(column: list | None, rows: slice) -> list:
    """A group's values of a column that may be absent from every event of the poll (None: each is None)."""
    return [None] * (rows.stop - rows.start) if column is None else column[rows]


def _groups(
    model_ids: list[str], partitions: list[int], distinct_models: set[str]
) -> tuple[list[int] | None, list[tuple[str, int, int, int]]]:
    """The rows grouped per (model_id, partition), groups in order of first appearance and each group's rows
    in input order: ``order``, the rows so grouped (None: as they are, one group), and per group
    ``(model_id, partition, start, stop)``, its rows ``order[start:stop]``.

    Each model's events usually come from one partition (they are keyed by model id): then the
    rows are grouped by model in numpy (a stable sort of model numbers). Otherwise row by row.
    """
    n = len(model_ids)
    if len(distinct_models) == 1 and len(set(partitions)) == 1:
        return None, [(model_ids[0], partitions[0], 0, n)]
    number = {m: i for i, m in enumerate(dict.fromkeys(model_ids))}  # in order of first appearance
    codes = np.array([number[model_id] for model_id in model_ids], dtype=np.intp)
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes)
    starts = np.cumsum(counts) - counts
    grouped = np.array(partitions, dtype=np.int64)[order]
    if (grouped == np.repeat(grouped[starts], counts)).all():  # one partition per model
        rows = order.tolist()
        return rows, [
            (model_id, partitions[rows[a]], a, b)
            for model_id, a, b in zip(number, starts.tolist(), (starts + counts).tolist())
        ]
    groups: dict[tuple[str, int], list[int]] = {}
    for i, group in enumerate(zip(model_ids, partitions)):
        rows = groups.get(group)
        if rows is None:
            groups[group] = [i]
        else:
            rows.append(i)
    grouped_rows: list[int] = []
    bounds = []
    for (model_id, partition), rows in groups.items():
        bounds.append((model_id, partition, len(grouped_rows), len(grouped_rows) + len(rows)))
        grouped_rows += rows
    return grouped_rows, bounds


def _keys_match(keys: list[bytes | None], model_ids: list[str]) -> bool:
    """Every key is None or the UTF-8 bytes of its row's model id (model ids already valid)."""
    return all(
        key is None or key == _valid_model_ids.get(model_id) or key == model_id.encode()
        for key, model_id in zip(keys, model_ids)
    )


def _checked_timestamps(written: list) -> np.ndarray | None:
    types = set(map(type, written))
    if types <= _NUMBER:
        try:
            times = np.array(written, dtype=np.float64)
        except OverflowError:  # an integer beyond any float
            return None
        if not ((times >= 0).all() and (times < EPOCH_SECONDS_END).all()):
            return None
        return times
    try:
        return np.array([event_seconds(value) for value in written], dtype=np.float64)
    except _Invalid:
        return None


def _within_skew(
    times: np.ndarray, messages: Sequence[RawMessage], bounds: InputBounds, require_record_time: bool = False
) -> bool:
    """No event time further than the skew bound ahead of its record's Kafka timestamp, and (with
    ``require_record_time``) no record without one; else the reference path names the culprits."""
    kafka_ms = np.array([m.timestamp_ms for m in messages], dtype=np.float64)
    known = kafka_ms > 0
    if require_record_time and not known.all():
        return False
    return not (known & (times - kafka_ms / 1000 > bounds.max_event_time_skew_s)).any()


def _in_bounds(values: list, bounds: InputBounds) -> bool:
    """A column's strings and numbers within the bounds (the reader checked the types already)."""
    types = set(map(type, values))
    if str in types:
        strings = values if len(types) == 1 else [v for v in values if type(v) is str]
        if max(map(len, strings)) > bounds.max_string_chars:
            return False
    if int in types or float in types:
        numbers = [v for v in values if type(v) is int or type(v) is float]
        try:
            magnitudes = np.abs(np.array(numbers, dtype=np.float64))
        except OverflowError:  # an integer beyond any float
            return False
        if (magnitudes > bounds.max_abs_number).any():
            return False
    return True


def _feature_columns(rows: Sequence[dict[str, Any]]) -> tuple[dict[str, FeatureColumn], frozenset[str]]:
    """Rows of name -> value (already checked by ``_features``) to one aligned column per name,
    None where absent, names in order of first appearance; and the names whose values are all
    numbers or None, which the sketches turn into floats without looking again."""
    names = dict.fromkeys(chain.from_iterable(rows))
    columns: dict[str, FeatureColumn] = {name: [row.get(name) for row in rows] for name in names}
    numeric = frozenset(name for name, values in columns.items() if set(map(type, values)) <= _NUMERIC_VALUE)
    return columns, numeric


def _load(value: bytes | None) -> dict:
    if value is None:
        raise _Invalid("tombstone: message has no value")
    if not value:
        raise _Invalid("empty value")
    try:
        event = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise _Invalid(f"invalid JSON: {exc}") from None
    if type(event) is not dict:
        raise _Invalid(f"value must be a JSON object, got {_JSON_TYPE[type(event)]}")
    return event


def _header(event: dict, key: bytes | None, keys: dict[str, bytes]) -> tuple:
    """Fields common to predictions and feedback: event_id, model_id, model_version, timestamp.

    ``keys`` caches model ids already validated, with the Kafka key they need.
    """
    event_id = event.get("event_id", _MISSING)
    if type(event_id) is not str or not 0 < len(event_id) <= MAX_EVENT_ID_CHARS:
        raise _field_error("event_id", event_id, "a string of 1 to 256 characters")

    model_id = event.get("model_id", _MISSING)
    expected_key = keys.get(model_id) if type(model_id) is str else None
    if expected_key is None:
        if model_id == OTHER_MODELS:
            raise _Invalid(
                f"field 'model_id' must not be '{OTHER_MODELS}', "
                "the model id streamdrift's metrics sum the models over metrics_max_models under"
            )
        if type(model_id) is not str or MODEL_ID.fullmatch(model_id) is None:
            raise _field_error("model_id", model_id, f"a string matching ^{MODEL_ID_PATTERN}$")
        expected_key = keys[model_id] = model_id.encode()
    if key is not None and key != expected_key:
        shown = key.decode("utf-8", "backslashreplace")
        raise _Invalid(
            f"key does not match model_id '{model_id}'", f"key '{_clip(shown)}' does not match model_id '{model_id}'"
        )

    version = event.get("model_version")
    if version is not None and (type(version) is not str or not 0 < len(version) <= MAX_MODEL_VERSION_CHARS):
        raise _field_error("model_version", version, "null or a string of 1 to 128 characters")
    if version is not None:
        _check_version_name(version)

    return event_id, model_id, version, event_seconds(event.get("timestamp", _MISSING))


def _check_skew(event_time: float, kafka_timestamp_ms: int, bounds: InputBounds, require_record_time: bool) -> None:
    if kafka_timestamp_ms <= 0:
        if require_record_time:
            raise _Invalid("record has no Kafka timestamp (0 or less): its field 'timestamp' cannot be bounded")
        return
    if event_time - kafka_timestamp_ms / 1000 > bounds.max_event_time_skew_s:
        raise _Invalid(
            f"field 'timestamp' must be at most {bounds.max_event_time_skew_s:g} s ahead of the record's Kafka timestamp"
        )


def event_seconds(value: object) -> float:
    """An event time as the contract writes it, an RFC 3339 date-time with a time zone or epoch seconds, in epoch
    seconds. The decoder reads each event's ``timestamp`` with it, the monitor reads back the window times of its
    drift events; a value outside the contract raises the decoder's rejection, which names the rule.

    >>> event_seconds("2026-12-05T01:00:00.5+01:00"), event_seconds(1796428800), event_seconds(1796428800.5)
    (1796428800.5, 1796428800.0, 1796428800.5)
    """
    if type(value) is str:
        return _parse_rfc3339(value)
    if type(value) is int or type(value) is float:  # not bool
        if 0 <= value < EPOCH_SECONDS_END:
            return float(value)
        raise _field_error("timestamp", value, "epoch seconds in [0, 253402300800)")
    raise _field_error("timestamp", value, "an RFC 3339 date-time string or epoch seconds")


def _parse_rfc3339(text: str) -> float:
    """RFC 3339 date-time with offset -> epoch seconds; the calendar is checked too."""
    match = _RFC3339.fullmatch(text)
    if match is not None:
        year, month, day, hour, minute, second, fraction, sign, off_h, off_m = match.groups()
        hour, minute, second = int(hour), int(minute), int(second)
        off_h, off_m = (int(off_h), int(off_m)) if sign else (0, 0)
        if year >= "1970" and hour < 24 and minute < 60 and second < 60 and off_h < 24 and off_m < 60:
            try:
                days = date(int(year), int(month), int(day)).toordinal() - _EPOCH_ORDINAL
            except ValueError:  # month or day out of range: fall through to the error
                pass
            else:
                offset = (off_h * 3600 + off_m * 60) * (-1 if sign == "-" else 1)
                seconds = days * 86400 + hour * 3600 + minute * 60 + second - offset
                at = seconds + float(fraction) if fraction else float(seconds)
                # within 1970 to 9999 in UTC, as epoch seconds are: an offset (or a fraction rounded up) can pass
                # either end, and a drift event's time past 9999 could not be written, one before 1970 not read back
                if 0 <= at < EPOCH_SECONDS_END:
                    return at
    raise _field_error("timestamp", text, "an RFC 3339 date-time with a time zone, year 1970 to 9999")


def _features(event: dict, bounds: InputBounds = DEFAULT_BOUNDS) -> dict:
    features = event.get("features", _MISSING)
    if type(features) is not dict:
        raise _field_error("features", features, "an object")
    if not features:
        return features
    if len(features) > MAX_FEATURES:
        raise _Invalid(f"field 'features' has {len(features)} names, at most 1000 allowed")
    # Checks of the whole dict first; only a failure walks the items, to name the culprit.
    if "" in features or max(map(len, features)) > MAX_FEATURE_NAME_CHARS:
        name = next(n for n in features if not 0 < len(n) <= MAX_FEATURE_NAME_CHARS)
        rule = f"field 'features' has a name of {len(name)} characters (must be 1 to 256)"
        raise _Invalid(rule, f"{rule}: {_clip(_show(name))}")
    if not _FEATURE_VALUE.issuperset(map(type, features.values())):
        name, value = next((n, v) for n, v in features.items() if type(v) not in _FEATURE_VALUE)
        raise _field_error(f"features.{name}", value, "a number, string, boolean or null")
    for name, value in features.items():
        _check_bounds(f"features.{name}", value, bounds)
    return features


def _scalar(event: dict, name: str, bounds: InputBounds = DEFAULT_BOUNDS) -> str | int | float | bool:
    value = event.get(name, _MISSING)
    if type(value) not in _SCALAR:
        raise _field_error(name, value, "a string, number or boolean")
    _check_bounds(name, value, bounds)
    return value


def _class(event: dict, name: str, bounds: InputBounds = DEFAULT_BOUNDS) -> str | int | float | bool:
    """A class (prediction, label): a scalar whose string is a class name (`_check_class_name`)."""
    value = _scalar(event, name, bounds)
    if type(value) is str:
        _check_class_name(f"field '{name}'", value)
    return value


def _check_class_name(field: str, value: str) -> None:
    """A string numpy's fixed-width strings keep whole (no NUL, trailing or not: the rule is simpler to state)
    that is not the overflow class's name. The reasons name the rule, the value only when asked."""
    if _NUL in value:
        rule = f"{field} must be a class name without U+0000 (NUL)"
        raise _Invalid(rule, f"{rule}, got {_clip(_show(value))}")
    if value == OTHER:
        raise _Invalid(f"{field} must not be '{OTHER}', {_OTHER_RULE}")


def _check_version_name(version: str) -> None:
    """A model version the monitors keep apart from every other (the metrics per version hold them)."""
    _check_kept_apart(version, _VERSION_NUL_RULE, ", got ", _RESERVED_VERSION_RULES)


def _check_kept_apart(value: str, nul_rule: str, shown_as: str, reserved: dict[str, str]) -> None:
    """A name the monitors keep apart from every other where numpy's fixed-width strings hold it: those drop
    trailing NULs, so no NUL (``nul_rule``; the detail shows the value after ``shown_as``), and ``reserved``
    (name -> the rule refusing it) are the monitors' own buckets."""
    if _NUL in value:
        raise _Invalid(nul_rule, f"{nul_rule}{shown_as}{_clip(_show(value))}")
    if value in reserved:
        raise _Invalid(reserved[value])


def _class_names(values: list) -> bool:
    """Whether a column's strings are all class names `_check_class_name` takes (a whole column at once)."""
    types = set(map(type, values))
    if str not in types:
        return True
    strings = values if len(types) == 1 else [v for v in values if type(v) is str]
    return OTHER not in strings and _NUL not in "".join(strings)


def _check_bounds(name: str, value: object, bounds: InputBounds) -> None:
    """A string's length and a number's magnitude (a value of any other type passes)."""
    if type(value) is str:
        if len(value) > bounds.max_string_chars:
            rule = f"field '{name}' must be a string of at most {bounds.max_string_chars} characters"
            raise _Invalid(f"{rule}, got {len(value)} characters", f"{rule}, got {_clip(_show(value))}")
    elif type(value) is int or type(value) is float:
        if not -bounds.max_abs_number <= value <= bounds.max_abs_number:
            raise _field_error(name, value, f"a number of magnitude at most {bounds.max_abs_number:g}")


def _score(event: dict) -> float:
    score = event.get("score", _MISSING)
    if score is _MISSING:
        return _NAN
    if type(score) in _NUMBER and 0 <= score <= 1:
        return float(score)
    raise _field_error("score", score, "a number in [0, 1]")


def _value(event: dict, bounds: InputBounds = DEFAULT_BOUNDS) -> float:
    """A feedback's business value, NaN where absent. JSON writes no NaN or infinity, and the magnitude
    bound keeps a number that overflowed a float (``1e400``) out too: every value counted is finite."""
    value = event.get("value", _MISSING)
    if value is _MISSING:
        return _NAN
    if type(value) not in _NUMBER:
        raise _field_error("value", value, "a number")
    _check_bounds("value", value, bounds)
    return float(value)


def _class_scores(event: dict, bounds: InputBounds = DEFAULT_BOUNDS) -> dict[str, float] | None:
    """Class names are users' values: a reason names the field ``scores``, the class only when asked."""
    scores = event.get("scores", _MISSING)
    if scores is _MISSING:
        return None
    if type(scores) is not dict:
        raise _field_error("scores", scores, "an object of class to number in [0, 1]")
    has_int = False
    for name, p in scores.items():
        _check_name_length("scores", "a class name", name, bounds)
        if _NUL in name:
            rule = "field 'scores' has a class name with U+0000 (NUL)"
            raise _Invalid(rule, f"{rule}: {_clip(_show(name))}")
        if name == OTHER:
            raise _Invalid(f"field 'scores' has the class name '{OTHER}', {_OTHER_RULE}")
        if type(p) not in _NUMBER or not 0 <= p <= 1:
            raise _named_field_error("scores", "each class", name, p, "a number in [0, 1]")
        has_int = has_int or type(p) is int
    if has_int:  # a 0 or a 1: keep the values floats, as the column promises
        return {name: float(p) for name, p in scores.items()}
    return scores


def _attributions(event: dict, bounds: InputBounds = DEFAULT_BOUNDS) -> dict[str, float] | None:
    """Feature names are users' names: a reason names the field ``attributions``, the feature only when asked.
    At most ``MAX_ATTRIBUTIONS`` features, each a finite number within ``max_abs_number`` (a bool is not one)."""
    attributions = event.get("attributions", _MISSING)
    if attributions is _MISSING:
        return None
    if type(attributions) is not dict:
        raise _field_error("attributions", attributions, "an object of feature to number")
    if len(attributions) > MAX_ATTRIBUTIONS:
        raise _Invalid(f"field 'attributions' has {len(attributions)} features, at most {MAX_ATTRIBUTIONS} allowed")
    for name, value in attributions.items():
        _check_name_length("attributions", "a feature name", name, bounds)
        if type(value) not in _NUMBER or not abs(value) <= bounds.max_abs_number:
            expected = f"a number of magnitude at most {bounds.max_abs_number:g}"
            raise _named_field_error("attributions", "each feature", name, value, expected)
    return {name: float(value) for name, value in attributions.items()}


def _segment(event: dict, bounds: InputBounds = DEFAULT_BOUNDS) -> dict | None:
    """Segment names and values are users' values: a reason names the field ``segment``, not them
    (unless asked); both are length-bounded as other strings."""
    segment = event.get("segment", _MISSING)
    if segment is _MISSING:
        return None
    if type(segment) is not dict:
        raise _field_error("segment", segment, "an object")
    if len(segment) > MAX_SEGMENT_ATTRIBUTES:
        raise _Invalid(f"field 'segment' has {len(segment)} names, at most 32 allowed")
    for name, value in segment.items():
        _check_name_length("segment", "a name", name, bounds)
        if type(value) not in _SCALAR:
            raise _named_field_error("segment", "each name", name, value, "a string, number or boolean")
        if type(value) is str and len(value) > bounds.max_string_chars:
            expected = f"a string of at most {bounds.max_string_chars} characters"
            raise _Invalid(
                f"field 'segment' must map each name to {expected}, got {len(value)} characters",
                f"field 'segment.{name}' must be {expected}, got {_clip(_show(value))}",
            )
        if type(value) is str:
            _check_segment_value(name, value)
    return segment


def _check_segment_value(name: str, value: str) -> None:
    """A segment value the segment metrics keep apart from every other (``_check_kept_apart``)."""
    _check_kept_apart(value, _SEGMENT_NUL_RULE, f": 'segment.{name}' is ", _RESERVED_SEGMENT_RULES)


def _check_name_length(field: str, what: str, name: str, bounds: InputBounds) -> None:
    if len(name) > bounds.max_string_chars:
        rule = f"field '{field}' has {what} of {len(name)} characters, at most {bounds.max_string_chars} allowed"
        raise _Invalid(rule, f"{rule}: {_clip(_show(name))}")


def _named_field_error(field: str, each: str, name: str, value: object, expected: str) -> _Invalid:
    """A breach in an object whose names are users' values (class names, segment names): the redacted
    reason names the field only; the clear one names ``field.name`` and quotes the value."""
    return _Invalid(
        f"field '{field}' must map {each} to {expected}, got {_JSON_TYPE[type(value)]}",
        f"field '{field}.{name}' must be {expected}, got {_clip(_show(value))}",
    )


def _field_error(name: str, value: object, expected: str) -> _Invalid:
    if value is _MISSING:
        return _Invalid(f"missing field '{name}'")
    rule = f"field '{name}' must be {expected}"
    return _Invalid(f"{rule}, got {_JSON_TYPE[type(value)]}", f"{rule}, got {_clip(_show(value))}")


def _show(value: object) -> str:
    """The value as JSON, as the producer wrote it (near enough)."""
    return orjson.dumps(value).decode()


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def category_hash(value: str, salt: str | None = None) -> str:
    """How a string feature value is tracked when it must not be kept in clear: the first 16 hex digits of
    its SHA-256, or with ``salt`` (``privacy.hash_salt``, a secret) of its HMAC-SHA256 under the salt, which
    no one without the salt can recompute for every candidate of a small space (SSNs, phone numbers).

    >>> category_hash("123-45-6789")
    '#01a54629efb95228'
    >>> category_hash("123-45-6789", "s3cret")
    '#e9e7e9a44c8e2852'
    """
    data = value.encode("utf-8", "surrogatepass")
    if salt is None:
        return "#" + hashlib.sha256(data).hexdigest()[:16]
    return "#" + hmac.new(salt.encode(), data, hashlib.sha256).hexdigest()[:16]


def _hide_long_categories(batches: list[PredictionBatch], bounds: InputBounds) -> None:
    """Replace, in place, the string feature values the monitors must not track in clear."""
    for batch in batches:
        numeric = batch.numeric_features or frozenset()
        for name, values in batch.features.items():
            if name in numeric or not isinstance(values, list):
                continue
            batch.features[name] = _hide_long(values, bounds)


def _hide_long(values: list, bounds: InputBounds) -> list:
    """``values`` with the strings the monitors must not track in clear hashed (the list itself where none is):
    value by value, so a poll's column gives each group of its rows what the group's own column would."""
    hash_all, limit, salt = bounds.hash_categories, bounds.max_category_length, bounds.hash_salt
    if hash_all or any(type(v) is str and len(v) > limit for v in values):
        return [category_hash(v, salt) if type(v) is str and (hash_all or len(v) > limit) else v for v in values]
    return values
