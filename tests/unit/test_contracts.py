"""The JSON Schemas in schemas/ and the decoder are one contract.

Every fixture under tests/fixtures/events/ goes through both the schema
(jsonschema, draft 2020-12, with date-time format checking) and the decoder;
they must agree on every message. An invalid fixture may have a ``.reason``
sidecar: a substring of the decoder's rejection reason. Fixtures are parsed
with orjson on the schema side too: a value orjson cannot parse is not a JSON
document, so no schema can accept it.
"""

from __future__ import annotations

import calendar
import json
import math
import os
from datetime import datetime
from pathlib import Path

import jsonschema
import numpy as np
import orjson
import pytest

from streamdrift.core import decode
from streamdrift.core.config import InputBounds
from streamdrift.core.decode import decode_feedback, decode_predictions
from streamdrift.core.records import RawMessage, column_values

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"
FIXTURES = ROOT / "tests" / "fixtures" / "events"
KINDS = ("prediction", "feedback", "drift_event")
DECODERS = {"prediction": decode_predictions, "feedback": decode_feedback}


def _is_rfc3339(text: object) -> bool:
    """Stand-in date-time check, used only when rfc3339-validator is not installed."""
    if not isinstance(text, str) or len(text) < 20 or text[10] not in "Tt":
        return False
    try:
        parsed = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError:
        return False
    return parsed.tzinfo is not None


def _format_checker() -> jsonschema.FormatChecker:
    checker = jsonschema.FormatChecker()
    if "date-time" not in checker.checkers:
        # jsonschema checks date-time only when rfc3339-validator is installed;
        # otherwise the format would let anything through.
        checker.checks("date-time")(_is_rfc3339)
    return checker


def _schema(kind: str) -> dict:
    return json.loads((SCHEMAS / f"{kind}.schema.json").read_text(encoding="utf-8"))


VALIDATORS = {kind: jsonschema.Draft202012Validator(_schema(kind), format_checker=_format_checker()) for kind in KINDS}


def _schema_accepts(kind: str, raw: bytes) -> bool:
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    return VALIDATORS[kind].is_valid(document)


def _decode_one(kind: str, raw: bytes | None, key: bytes | None = None):
    message = RawMessage(topic=kind, partition=0, offset=0, key=key, value=raw)
    batches, rejected = DECODERS[kind]([message])
    assert len(batches) + len(rejected) == 1
    assert all(len(b) == 1 for b in batches)
    return (batches[0] if batches else None), (rejected[0].reason if rejected else None)


def _fixtures(kind: str, validity: str) -> list[Path]:
    return sorted((FIXTURES / kind / validity).glob("*.json"))


def _params(kinds, validity):
    return [pytest.param(kind, path, id=f"{kind}/{path.stem}") for kind in kinds for path in _fixtures(kind, validity)]


# ---------------------------------------------------------------- the schemas


@pytest.mark.parametrize("kind", KINDS)
def test_schema_is_valid_draft_2020_12(kind: str) -> None:
    schema = _schema(kind)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].endswith(f"/{kind}.schema.json")
    jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("kind", KINDS)
def test_every_field_has_title_and_description(kind: str) -> None:
    def walk(node: object, path: str) -> None:
        if isinstance(node, dict):
            for name, sub in node.get("properties", {}).items():
                assert sub.get("title") and sub.get("description"), f"{path}.{name}"
            for key, sub in node.items():
                walk(sub, f"{path}.{key}")
        elif isinstance(node, list):
            for i, sub in enumerate(node):
                walk(sub, f"{path}[{i}]")

    walk(_schema(kind), kind)


def test_date_time_is_really_checked() -> None:
    """The date-time rule holds with format checking and also without it."""
    checker = _format_checker()
    assert not checker.conforms("2024-05-01T12:00:00", "date-time")
    base = orjson.loads((FIXTURES / "prediction" / "valid" / "epoch_int.json").read_bytes())
    bare = jsonschema.Draft202012Validator(_schema("prediction"))  # format as annotation only
    for validator in (VALIDATORS["prediction"], bare):
        assert validator.is_valid({**base, "timestamp": "2024-05-01T12:00:00Z"})
        for bad in ("2024-05-01T12:00:00", "2024-02-30T00:00:00Z", "garbage"):
            assert not validator.is_valid({**base, "timestamp": bad}), bad


def test_fixture_sets_cover_the_contract() -> None:
    counts = {(k, v): len(_fixtures(k, v)) for k in KINDS for v in ("valid", "invalid")}
    assert counts[("prediction", "invalid")] >= 15, counts
    assert min(counts.values()) >= 4, counts
    for kind in DECODERS:
        for path in _fixtures(kind, "invalid"):
            assert path.with_suffix(".reason").exists(), f"{path.name} has no .reason sidecar"


# ---------------------------------------------------------------- fixtures: schema == decoder


@pytest.mark.parametrize(("kind", "path"), _params(DECODERS, "valid"))
def test_valid_fixture_is_accepted_by_schema_and_decoder(kind: str, path: Path) -> None:
    raw = path.read_bytes()
    assert _schema_accepts(kind, raw), VALIDATORS[kind].iter_errors(orjson.loads(raw))
    model_id = orjson.loads(raw)["model_id"].encode()
    for key in (None, model_id):
        batch, reason = _decode_one(kind, raw, key)
        assert reason is None, reason


@pytest.mark.parametrize(("kind", "path"), _params(DECODERS, "invalid"))
def test_invalid_fixture_is_rejected_by_schema_and_decoder(kind: str, path: Path) -> None:
    raw = path.read_bytes()
    assert not _schema_accepts(kind, raw)
    batch, reason = _decode_one(kind, raw)
    assert reason is not None, f"decoder accepted {path.name}"
    sidecar = path.with_suffix(".reason")
    if sidecar.exists():
        assert sidecar.read_text(encoding="utf-8").strip() in reason


@pytest.mark.parametrize(("kind", "path"), _params(["drift_event"], "valid"))
def test_valid_drift_event_fixture(kind: str, path: Path) -> None:
    assert _schema_accepts(kind, path.read_bytes())


@pytest.mark.parametrize(("kind", "path"), _params(["drift_event"], "invalid"))
def test_invalid_drift_event_fixture(kind: str, path: Path) -> None:
    assert not _schema_accepts(kind, path.read_bytes())


def _close_to(actual: float, expected: float) -> bool:
    return math.isclose(actual, expected, rel_tol=0, abs_tol=1e-6)


def _expected_epoch(value: int | float | str) -> float:
    """Independent of the decoder: datetime's own ISO parser."""
    if isinstance(value, str):
        return datetime.fromisoformat(value.upper().replace("Z", "+00:00")).timestamp()
    return float(value)


@pytest.mark.parametrize(("kind", "path"), _params(["prediction"], "valid"))
def test_valid_prediction_fixture_decodes_to_its_values(kind: str, path: Path) -> None:
    event = orjson.loads(path.read_bytes())
    batch, _ = _decode_one(kind, path.read_bytes())
    assert (batch.model_id, batch.partition) == (event["model_id"], 0)
    assert batch.event_ids == [event["event_id"]]
    assert batch.model_versions == [event.get("model_version")]
    assert _close_to(batch.timestamps[0], _expected_epoch(event["timestamp"]))
    assert batch.features == {name: [value] for name, value in event["features"].items()}
    assert batch.predictions == [event["prediction"]]
    assert _same_floats(batch.scores, [event.get("score", math.nan)])
    assert batch.class_scores == [event.get("scores")]
    assert batch.segments == [event.get("segment")]


@pytest.mark.parametrize(("kind", "path"), _params(["feedback"], "valid"))
def test_valid_feedback_fixture_decodes_to_its_values(kind: str, path: Path) -> None:
    event = orjson.loads(path.read_bytes())
    batch, _ = _decode_one(kind, path.read_bytes())
    assert (batch.model_id, batch.event_ids) == (event["model_id"], [event["event_id"]])
    assert batch.labels == [event["label"]]
    assert _close_to(batch.timestamps[0], _expected_epoch(event["timestamp"]))
    assert batch.predictions == [event.get("prediction")]
    assert _same_floats(batch.scores, [event.get("score", math.nan)])
    assert _same_floats(batch.values, [event.get("value", math.nan)])


# ---------------------------------------------------------------- generated: schema == decoder

TRICKY_VALUES = [
    None,
    True,
    False,
    0,
    1,
    -1,
    0.5,
    1.0,
    1.5,
    -0.0,
    1e20,
    "",
    "x",
    "x" * 257,
    "m1\n",
    "1",
    [],
    [1],
    {},
    {"a": 1},
    {"a": 0.5},
    {"a": None},
    {"a": [1]},
    {"a": True},
    {"": 1},
    "2024-05-01T12:00:00Z",
    "2024-05-01T12:00:00",
    "2024-05-01T12:00:00+01:00\n",
    # class names (label, prediction, scores) numpy would merge: "a\x00" with "a" (its fixed-width strings drop
    # trailing NULs), "__other__" with the classes over max_classes
    "a\x00",
    "a\x00b",
    "__other__",
    {"a\x00": 0.5},
    {"__other__": 0.5},
    # model versions numpy would merge likewise: "__none__" with rows without a version, "__other__" with the
    # versions over max_versions
    "__none__",
    # segment values numpy would merge likewise: "a\x00" with "a", "__other__" with the values over max_segments,
    # "__missing__" with the events without the attribute
    {"s": "a\x00"},
    {"s": "__other__"},
    {"s": "__missing__"},
]
PREDICTION = {
    "event_id": "e1",
    "model_id": "m1",
    "timestamp": 1714564800,
    "features": {"x": 1.0},
    "prediction": "a",
    "score": 0.5,
}
FEEDBACK = {"event_id": "e1", "model_id": "m1", "timestamp": 1714564800, "label": "a"}
MUTATIONS = [
    pytest.param(kind, field, value, id=f"{kind}.{field}={value!r}"[:90])
    for kind, base, fields in (
        (
            "prediction",
            PREDICTION,
            (
                "event_id",
                "model_id",
                "model_version",
                "timestamp",
                "features",
                "prediction",
                "score",
                "scores",
                "segment",
            ),
        ),
        (
            "feedback",
            FEEDBACK,
            ("event_id", "model_id", "model_version", "timestamp", "label", "prediction", "score", "value"),
        ),
    )
    for field in fields
    for value in TRICKY_VALUES
]


@pytest.mark.parametrize(("kind", "field", "value"), MUTATIONS)
def test_schema_and_decoder_agree_on_each_field(kind: str, field: str, value: object) -> None:
    base = PREDICTION if kind == "prediction" else FEEDBACK
    raw = orjson.dumps({**base, field: value})
    _, reason = _decode_one(kind, raw)
    assert _schema_accepts(kind, raw) == (reason is None), reason
    if reason is not None:
        assert f"'{field}" in reason  # the reason names the field


def test_timestamps_agree_with_the_calendar() -> None:
    """Leap days of every year, month ends and odd offsets, through schema and decoder."""
    rfc3339 = jsonschema.Draft202012Validator(_schema("prediction")["$defs"]["rfc3339"])
    cases = [f"{y:04d}-02-29T00:00:00Z" for y in range(1968, 10000)]
    cases += [
        f"{y:04d}-{m:02d}-{d:02d}T23:59:59.5-01:30"
        for y in (1970, 1999, 2000, 2024, 2100, 9999)
        for m in range(1, 13)
        for d in (28, 29, 30, 31)
    ]
    messages = [
        RawMessage("p", 0, i, None, orjson.dumps({**PREDICTION, "timestamp": ts})) for i, ts in enumerate(cases)
    ]
    batches, rejected = decode_predictions(messages)
    decoded = {}
    for batch in batches:
        decoded.update(zip(batch.offsets.tolist(), batch.timestamps.tolist()))
    assert len(decoded) + len(rejected) == len(cases)
    for i, text in enumerate(cases):
        y, m, d = int(text[:4]), int(text[5:7]), int(text[8:10])
        exists = y >= 1970 and d <= calendar.monthrange(y, m)[1]
        assert rfc3339.is_valid(text) == exists, text
        # where they part: an instant outside 1970 to 9999 in UTC (here 9999-12-31 at a negative offset), which
        # the decoder rejects as it rejects epoch seconds outside them (a drift event could not write it) and the
        # schema's pattern, a calendar of local dates, cannot tell (its description says so)
        in_utc = not text.startswith("9999-12-31") or text.endswith("Z")
        assert (i in decoded) == (exists and in_utc), text
        if exists and text.endswith("Z"):
            assert decoded[i] == calendar.timegm((y, m, d, 0, 0, 0)), text
        elif exists and in_utc:  # 23:59:59.5 at UTC-01:30
            assert decoded[i] == calendar.timegm((y, m, d, 23, 59, 59)) + 5400.5, text


# ---------------------------------------------------------------- hand-made batches


def _prediction(event_id: str, model_id: str, ts: object, **extra) -> bytes:
    event = {"event_id": event_id, "model_id": model_id, "timestamp": ts, "features": {}, "prediction": 0}
    return orjson.dumps({**event, **extra})


def _same_floats(actual: np.ndarray, expected: list[float]) -> bool:
    return actual.dtype == np.float64 and np.array_equal(actual, np.array(expected), equal_nan=True)


def test_predictions_are_grouped_by_model_and_partition_in_order() -> None:
    m = [
        RawMessage(
            "p", 1, 100, b"a", _prediction("e1", "a", 10, features={"x": 1, "c": "u"}, prediction=1, score=0.25)
        ),
        RawMessage(
            "p",
            0,
            7,
            b"b",
            _prediction("e2", "b", "1970-01-01T00:00:20Z", prediction="cat", scores={"cat": 1, "dog": 0}),
        ),
        RawMessage(
            "p",
            1,
            101,
            None,
            _prediction("e3", "a", 30.5, features={"y": None, "x": 2.5}, prediction=0, segment={"country": "FR"}),
        ),
        RawMessage("p", 1, 102, b"b", _prediction("e4", "a", 40)),  # key mismatch
        RawMessage("p", 0, 8, b"a", None),  # tombstone
        RawMessage(
            "p", 0, 9, b"a", _prediction("e5", "a", 50, features={"c": "v"}, prediction=1, model_version="v2", score=1)
        ),
        RawMessage("p", 1, 103, b"a", _prediction("e6", "a", 60, features={"x": True}, prediction=True)),
    ]
    batches, rejected = decode_predictions(m)

    assert [(b.model_id, b.partition, len(b)) for b in batches] == [("a", 1, 3), ("b", 0, 1), ("a", 0, 1)]
    a1, b0, a0 = batches
    assert a1.offsets.dtype == np.int64 and a1.offsets.tolist() == [100, 101, 103]
    assert a1.event_ids == ["e1", "e3", "e6"]
    assert a1.model_versions == [None, None, None]
    assert a1.timestamps.dtype == np.float64 and a1.timestamps.tolist() == [10.0, 30.5, 60.0]
    assert a1.features == {"x": [1, 2.5, True], "c": ["u", None, None], "y": [None, None, None]}
    assert a1.predictions == [1, 0, True]
    assert _same_floats(a1.scores, [0.25, math.nan, math.nan])
    assert a1.class_scores == [None, None, None]
    assert a1.segments == [None, {"country": "FR"}, None]

    assert b0.offsets.tolist() == [7] and b0.timestamps.tolist() == [20.0]
    assert b0.features == {} and b0.predictions == ["cat"]
    assert _same_floats(b0.scores, [math.nan])
    assert b0.class_scores == [{"cat": 1.0, "dog": 0.0}]
    assert all(type(p) is float for p in b0.class_scores[0].values())

    assert a0.offsets.tolist() == [9] and a0.model_versions == ["v2"]
    assert _same_floats(a0.scores, [1.0])

    assert [(r.message.offset, r.reason) for r in rejected] == [
        (102, "key does not match model_id 'a'"),
        (8, "tombstone: message has no value"),
    ]
    assert rejected[0].message is m[3]  # the original, for the dead-letter topic


def test_feedback_batch_columns() -> None:
    def feedback(event_id: str, **extra) -> bytes:
        event = {"event_id": event_id, "model_id": "m", "timestamp": 5, "label": 1}
        return orjson.dumps({**event, **extra})

    messages = [
        RawMessage("f", 2, 0, b"m", feedback("e1")),
        RawMessage("f", 2, 1, b"m", feedback("e2", label="no", prediction="yes", score=0.75)),
        RawMessage("f", 2, 2, b"m", feedback("e3", label=False, prediction=False, value=-2)),
        RawMessage("f", 2, 3, b"m", b""),
        RawMessage("f", 2, 4, b"m", feedback("e4", label=None)),
        RawMessage("f", 2, 5, b"m", feedback("e5", value="12")),
    ]
    batches, rejected = decode_feedback(messages)
    (batch,) = batches
    assert (batch.model_id, batch.partition) == ("m", 2)
    assert batch.offsets.tolist() == [0, 1, 2] and batch.offsets.dtype == np.int64
    assert batch.event_ids == ["e1", "e2", "e3"]
    assert batch.labels == [1, "no", False]
    assert batch.predictions == [None, "yes", False]
    assert _same_floats(batch.scores, [math.nan, 0.75, math.nan])
    assert _same_floats(batch.timestamps, [5.0, 5.0, 5.0])
    assert _same_floats(batch.values, [math.nan, math.nan, -2.0]) and batch.values.dtype == np.float64
    assert [r.reason for r in rejected] == [
        "empty value",
        "field 'label' must be a string, number or boolean, got null",
        "field 'value' must be a number, got string",
    ]


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        (None, None),
        (b"fraud-detector", None),
        (b"fraud", "key does not match model_id 'fraud-detector'"),
        (b"", "key does not match model_id 'fraud-detector'"),
        (b"fraud-detector\xff", "key does not match model_id 'fraud-detector'"),
    ],
)
def test_key_must_be_the_model_id(key: bytes | None, reason: str | None) -> None:
    raw = (FIXTURES / "prediction" / "valid" / "epoch_int.json").read_bytes()
    assert _decode_one("prediction", raw, key)[1] == reason
    feedback = (FIXTURES / "feedback" / "valid" / "minimal.json").read_bytes()
    assert _decode_one("feedback", feedback, key)[1] == reason


def test_nothing_in_nothing_out() -> None:
    assert decode_predictions([]) == ([], [])
    assert decode_feedback([]) == ([], [])


def test_first_breach_is_reported_in_field_order() -> None:
    raw = orjson.dumps({"event_id": "", "model_id": "bad id", "timestamp": -1})
    assert _decode_one("prediction", raw)[1].startswith("field 'event_id'")
    assert _decode_one("prediction", raw, key=b"other")[1].startswith("field 'event_id'")
    assert _decode_one("prediction", raw[:-1] + b',"event_id":"e"}', key=b"other")[1].startswith("field 'model_id'")


# ---------------------------------------------------------------- C reader's path == reference path
#
# A poll is first read and checked as a whole by the C reader's path (decode._decode_parsed,
# _decode_parsed_feedback); on any doubt the reference path runs message by message. Both must
# give the same batches and rejections for every message, alone or among good neighbours.

from dataclasses import fields as _fields  # noqa: E402

from streamdrift.core.decode import (  # noqa: E402
    _decode_parsed,
    _decode_parsed_feedback,
    _decode_rows,
    _feedback_batch,
    _feedback_row,
    _prediction_batch,
    _prediction_row,
)

_REFERENCE = {"prediction": (_prediction_row, _prediction_batch), "feedback": (_feedback_row, _feedback_batch)}
_C_READER = {"prediction": _decode_parsed, "feedback": _decode_parsed_feedback}


def _good(kind: str, i: int) -> tuple[bytes, int]:
    model = f"m{i % 3}"
    if kind == "prediction":
        event = {
            "event_id": f"g{i}",
            "model_id": model,
            "timestamp": 1714564800 + i,
            "model_version": "v1",
            "features": {"x": i * 0.5, "c": "ab"[i % 2], "n": None},
            "prediction": i % 2,
            "score": 0.25,
        }
    else:
        event = {"event_id": f"g{i}", "model_id": model, "timestamp": f"2024-05-01T12:00:{i:02d}Z", "label": i % 2}
        if i % 3:  # a business value on some: the C reader reads them too
            event["value"] = i * 2.5 - 7
    return orjson.dumps(event), i % 2


def _poll(kind: str, raw: bytes | None, key: bytes | None = None) -> list[RawMessage]:
    messages = [RawMessage(kind, p, i, None, v) for i, (v, p) in enumerate(_good(kind, i) for i in range(10))]
    messages.insert(5, RawMessage(kind, 1, 99, key, raw))
    return messages


def _shown(result: tuple[list, list]) -> list:
    """Batches and rejections as comparable values: repr keeps 1, 1.0 and True apart. A feature
    column read as floats (an array, NaN for null) is shown as the list it stands for."""
    batches, rejected = result
    out = [
        [
            (
                f.name,
                repr(getattr(b, f.name).tolist()) + str(getattr(b, f.name).dtype)
                if isinstance(getattr(b, f.name), np.ndarray)
                else repr(_listed(getattr(b, f.name))),
            )
            for f in _fields(b)
        ]
        for b in batches
    ]
    return out + [(r.message.offset, r.reason) for r in rejected]


def _listed(value: object) -> object:
    if isinstance(value, dict) and any(isinstance(v, np.ndarray) for v in value.values()):
        return {name: column_values(v) for name, v in value.items()}
    return value


@pytest.fixture
def reader() -> None:
    """The tests below compare decode's C reader of polls with the reference path: their polls are
    long enough to reach it (``_FAST_MIN``). CI builds the reader: there, its absence fails."""
    if not decode.SPEEDUPS:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("streamdrift.core._speedups was not built (make install builds it; is a C compiler there?)")
        pytest.skip("streamdrift.core._speedups not built")


def _agree(kind: str, messages: list[RawMessage]) -> None:
    assert _shown(DECODERS[kind](messages)) == _shown(_decode_rows(messages, *_REFERENCE[kind]))


@pytest.mark.usefixtures("reader")
@pytest.mark.parametrize(
    ("kind", "path"), _params(["prediction", "feedback"], "valid") + _params(["prediction", "feedback"], "invalid")
)
def test_c_reader_agrees_on_each_fixture(kind: str, path: Path) -> None:
    _agree(kind, _poll(kind, path.read_bytes()))


@pytest.mark.usefixtures("reader")
@pytest.mark.parametrize(("kind", "field", "value"), MUTATIONS)
def test_c_reader_agrees_on_each_field(kind: str, field: str, value: object) -> None:
    base = PREDICTION if kind == "prediction" else FEEDBACK
    _agree(kind, _poll(kind, orjson.dumps({**base, field: value})))


@pytest.mark.usefixtures("reader")
@pytest.mark.parametrize(
    "raw",
    [
        None,
        b"",
        b"[1]",
        b"{",
        orjson.dumps(PREDICTION).replace(b"1714564800", b"1" * 400),
        orjson.dumps(PREDICTION).replace(b"0.5", b"1" * 40),
    ],
)
def test_c_reader_agrees_on_unreadable_values(raw: bytes | None) -> None:
    _agree("prediction", _poll("prediction", raw))


@pytest.mark.usefixtures("reader")
@pytest.mark.parametrize("key", [None, b"m1", b"m2"])
def test_c_reader_agrees_on_keys(key: bytes | None) -> None:
    _agree("prediction", _poll("prediction", orjson.dumps(PREDICTION), key))


@pytest.mark.usefixtures("reader")
def test_c_reader_takes_a_valid_poll() -> None:
    for kind in ("prediction", "feedback"):
        messages = _poll(kind, _good(kind, 10)[0])
        assert _C_READER[kind](messages) is not None
        _agree(kind, messages)


@pytest.mark.usefixtures("reader")
@pytest.mark.parametrize("model", ["m0", "m1", "new"])
@pytest.mark.parametrize(
    "features",
    [
        {"x": 1.5, "c": "a", "": 2},  # as many names as the neighbours, one of them empty
        {"x": 1.5, "c": "a", "y" * 257: 2},  # one too long
        {"x": 1.5, "c": "a", "y" * 256: 2},  # other names, all valid
        {"x": 1.5, "c": "a", "n": [1]},  # the same names, a value of the wrong type
        {"x": "a", "c": 1.5, "n": True},  # the same names, the kinds swapped
        {"x": None, "c": None, "n": 0},
    ],
)
def test_c_reader_agrees_on_other_names_of_the_same_count(model: str, features: dict) -> None:
    """Other feature names than the poll's first message: the C reader declines, the reference decides."""
    event = {**PREDICTION, "model_id": model, "features": features}
    _agree("prediction", _poll("prediction", orjson.dumps(event)))


@pytest.mark.usefixtures("reader")
@pytest.mark.parametrize("position", [0, 5, 10])
@pytest.mark.parametrize("key", [b"m1", b"m1\x00", b"m1\x00m0", b"\x00m1", b"m", b"m10", None])
def test_c_reader_agrees_on_keys_when_every_message_has_one(position: int, key: bytes | None) -> None:
    """Keys with a NUL or a model id's prefix: never taken for the model id."""
    messages = [
        RawMessage("prediction", p, i, f"m{i % 3}".encode(), v)
        for i, (v, p) in enumerate(_good("prediction", i) for i in range(11))
    ]
    messages[position].key = key
    if position == 10:  # two neighbours whose keys joined spell the same bytes as their model ids joined
        messages[8].key, messages[9].key = b"m2\x00m0", b""
    _agree("prediction", messages)


@pytest.mark.usefixtures("reader")
@pytest.mark.parametrize("spread", [False, True])
@pytest.mark.parametrize("kind", ["prediction", "feedback"])
def test_c_reader_groups_interleaved_models(kind: str, spread: bool) -> None:
    """Models interleaved in a poll, each on its own partition (grouped in numpy) or one of them
    on two (grouped row by row): the C reader takes the poll, and gives the same batches, rows in
    order, batches in order of first row."""
    rng = np.random.default_rng(3)
    messages = []
    for offset, m in enumerate(rng.integers(0, 4, 40).tolist()):
        value, _ = _good(kind, offset)
        event = {**orjson.loads(value), "model_id": f"m{m}"}
        partition = (m + offset % 2) % 3 if spread and m == 1 else m % 3
        messages.append(RawMessage(kind, partition, offset, f"m{m}".encode(), orjson.dumps(event)))
    assert _C_READER[kind](messages) is not None
    _agree(kind, messages)


@pytest.mark.usefixtures("reader")
@pytest.mark.parametrize("hash_all", [False, True])
def test_c_reader_groups_mixed_and_long_categories_as_the_reference(
    hash_all: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Interleaved models whose list features mix strings (short and over ``max_category_length``), numbers
    and nulls, so that a group's column may hold only numbers where the poll's does not, or only strings: the
    C reader, which orders a poll's columns by group once and hides long categories for the whole poll, gives
    the batches of the reference path, batch by batch (issue 19)."""
    rng = np.random.default_rng(19)
    choices: list[object] = ["short", "x" * 12, "y" * 9, 7, 2.5, None, True]
    messages = []
    for offset, m in enumerate(rng.integers(0, 5, 60).tolist()):
        value, _ = _good("prediction", offset)
        event = orjson.loads(value)
        event["model_id"] = f"m{m}"
        pick = choices[int(rng.integers(0, len(choices)))]
        # m0's "mixed" is only numbers, m1's only strings: a group's kind differs from the poll's
        event["features"]["mixed"] = offset % 3 if m == 0 else ("ab"[offset % 2] if m == 1 else pick)
        event["features"]["long"] = "z" * int(rng.integers(1, 20))
        messages.append(RawMessage("prediction", m % 3, offset, f"m{m}".encode(), orjson.dumps(event)))
    bounds = InputBounds(max_category_length=8, hash_categories=hash_all)
    assert _decode_parsed(messages, bounds) is not None  # the C reader takes the poll
    fast = _shown(decode_predictions(messages, bounds))
    monkeypatch.setattr(decode, "_speedups", None)
    assert fast == _shown(decode_predictions(messages, bounds))


def _mutated(rng: np.random.Generator, value: bytes) -> bytes:
    """One random edit of the bytes: the kinds of damage a producer or a broken pipe makes."""
    at = int(rng.integers(0, len(value)))
    alphabet = b'{}[]":,.-+eE0123456789 \\\x00\x7f\xc3\xa9\xff\xed\xa0nultrfas'
    byte = alphabet[int(rng.integers(0, len(alphabet)))]
    edit = int(rng.integers(0, 5))
    if edit == 0:
        return value[:at] + bytes([byte]) + value[at + 1 :]
    if edit == 1:
        return value[:at] + value[at + 1 :]
    if edit == 2:
        return value[:at] + bytes([byte]) + value[at:]
    if edit == 3:
        return value[:at]
    end = min(len(value), at + int(rng.integers(1, 12)))
    return value[:end] + value[at:end] + value[end:]  # a run repeated


@pytest.mark.usefixtures("reader")
@pytest.mark.parametrize("kind", ["prediction", "feedback"])
@pytest.mark.parametrize("seed", range(4))
def test_c_reader_agrees_on_randomly_damaged_messages(seed: int, kind: str) -> None:
    """Seeded random edits of a good event among good neighbours: whatever the damage, the
    poll's batches and rejections are those of the message-by-message reference."""
    rng = np.random.default_rng(seed)
    for _ in range(300):
        if kind == "prediction":  # the neighbours' feature names: the C reader reads it unless damaged
            event = {
                **PREDICTION,
                "features": {"x": float(rng.normal()), "c": "ab", "n": None},
                "segment": {"region": "eu"},
                "scores": {"0": 0.25, "1": 0.75},
            }
        else:
            event = {**FEEDBACK, "prediction": "b", "score": float(rng.random()), "model_version": "v2", "value": -3.25}
        raw = orjson.dumps(event)
        for _ in range(int(rng.integers(1, 4))):
            raw = _mutated(rng, raw) or raw
        _agree(kind, _poll(kind, raw))


@pytest.mark.parametrize(
    ("kind", "event"),
    [
        ("feedback", {**FEEDBACK, "label": "secret\x00"}),
        ("feedback", {**FEEDBACK, "prediction": "secret\x00"}),
        ("prediction", {**PREDICTION, "prediction": "se\x00cret"}),
        ("prediction", {**PREDICTION, "scores": {"secret\x00": 1.0}}),
    ],
)
def test_a_class_name_with_nul_is_refused_naming_the_field_not_the_value(kind: str, event: dict) -> None:
    """numpy's fixed-width strings, where the metrics keep class names, drop trailing NULs: "a\\x00" was counted
    as class "a". The contract refuses NUL in class names; the reason names no value."""
    _, reason = _decode_one(kind, orjson.dumps(event))
    assert reason is not None and "U+0000 (NUL)" in reason and "secret" not in reason and "cret" not in reason


@pytest.mark.parametrize("kind", ["prediction", "feedback"])
def test_a_model_version_with_nul_is_refused_naming_the_field_not_the_value(kind: str) -> None:
    """The metrics per version hold versions in numpy's fixed-width strings too: "v1\\x00" was counted as "v1"."""
    event = {**(PREDICTION if kind == "prediction" else FEEDBACK), "model_version": "secret\x00"}
    _, reason = _decode_one(kind, orjson.dumps(event))
    assert reason == "field 'model_version' must be a version name without U+0000 (NUL)"


def test_a_segment_value_with_nul_is_refused_naming_the_field_not_the_value() -> None:
    """Segment metrics hold values in numpy's fixed-width strings: "web\\x00" was counted as segment "web"."""
    _, reason = _decode_one("prediction", orjson.dumps({**PREDICTION, "segment": {"secret": "secret\x00"}}))
    assert reason == "field 'segment' has a value with U+0000 (NUL)"
