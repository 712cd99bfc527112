"""decode's C reader of prediction and feedback polls (``streamdrift.core._speedups``): it reads what it takes
exactly as orjson does, leaves what it doubts to orjson, and the monitors end in the same state
either way. (tests/unit/test_contracts.py runs its fast-path tests with and without it.) Also its walk that
puts a loaded snapshot's arrays in place: the same as snapshot.py's."""

from __future__ import annotations

import math
import os
import random
import re
import struct

import numpy as np
import orjson
import pytest

from streamdrift.core import decode
from streamdrift.core import state as snapshot
from streamdrift.core.config import MonitorSettings
from streamdrift.core.records import RawMessage
from streams import FB, PRED, demo_messages, run_monitors, state_bytes

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture
def speedups():
    if not decode.SPEEDUPS:
        if CI:
            pytest.fail("streamdrift.core._speedups was not built (make install builds it; is a C compiler there?)")
        pytest.skip("streamdrift.core._speedups not built")
    return decode._speedups


def _event(features: bytes, extra: bytes = b"") -> bytes:
    return (
        b'{"event_id":"e","model_id":"m","timestamp":1700000000,"features":'
        + features
        + b',"prediction":1'
        + extra
        + b"}"
    )


def _bits(x: float) -> bytes:
    return struct.pack("<d", x)


def _numbers(rng: random.Random) -> list[bytes]:
    """Numbers as producers write them: shortest repr, fixed and scientific notation, many digits."""
    out = []
    for _ in range(3000):
        x = struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0]
        if not math.isfinite(x) or x == 0:
            continue
        out.append(repr(x).encode())
        out.append(f"{x:.17e}".encode())
    for _ in range(3000):
        x = rng.gauss(0, 1) * 10 ** rng.randint(-30, 30)
        out += [repr(x).encode(), f"{x:.4f}".encode(), f"{x:.9g}".encode(), f"{x:.20f}".encode(), f"{x:E}".encode()]
    out += [
        b"0.0",
        b"-0.0",
        b"0e5",
        b"1E22",
        b"1e23",
        b"9007199254740993.0",
        b"9007199254740992.5",
        b"0.1",
        b"123456789012345678.5",
        b"1.7976931348623157e308",
        b"2.2250738585072014e-308",
        b"4.9406564584124654e-324",
        b"0.000000000000000000000000000001",
        b"1e-22",
        b"1.5e-23",
    ]
    return out


def test_floats_are_read_bit_for_bit_as_orjson_reads_them(speedups) -> None:
    taken = 0
    numbers = _numbers(random.Random(11))
    for text in numbers:
        expected = orjson.loads(text)
        if type(expected) is not float:
            continue
        parsed = speedups.predictions([_event(b'{"x":' + text + b"}")])
        if parsed is None:  # left to orjson: only a value that rounds to zero, or one too long to copy
            assert expected == 0.0 or len(text) >= 400, text
            continue
        block, lists = parsed[9], parsed[10]
        assert lists == [None]
        assert _bits(np.frombuffer(block, np.float64)[0]) == _bits(expected), text
        taken += 1
    assert taken >= len(numbers) * 0.95


@pytest.mark.parametrize("text", [b"0", b"-0", b"7", b"-12", b"123456789012345678", b"-123456789012345678"])
def test_integers_stay_integers(speedups, text: bytes) -> None:
    parsed = speedups.predictions([_event(b'{"x":1.5,"n":' + text + b"}")])
    assert parsed[10][1] == [orjson.loads(text)] and type(parsed[10][1][0]) is int


@pytest.mark.parametrize(
    "doubt",
    [
        _event(v)
        for v in (
            b'{"x":"a\\nb"}',
            b'{"x":"\\u0041"}',
            b'{"x":1,"x":2}',
            b'{"x":[1]}',
            b'{"x":{}}',
            b'{"x":1e-400}',
            b'{"x":1e400}',
            b'{"x":1234567890123456789}',
            b'{"x":01}',
            b'{"x":1.}',
            b'{"x":.5}',
            b'{"x":+1}',
            b'{"x":NaN}',
            b'{"x":1,}',
            b'{"x" 1}',
            b'{"x":tru}',
            b'{"x":"\xff"}',
            b'{"x":"\xed\xa0\x80"}',
            b'{"x":"a\x01"}',
            b'{"x\\u0041":1}',
        )
    ]
    + [
        _event(b'{"x":1.5}', b',"model_id":"m"'),
        _event(b'{"x":1.5}', b',"score":null'),
        _event(b'{"x":1.5}', b',"scores":{"a":0.5,"a":0.5}'),
        _event(b'{"x":1.5}', b',"segment":[]'),
        _event(b'{"x":1.5}') + b"x",
        b'{"event_id":"e","model_id":"m","timestamp":1,"prediction":1}',
        _event(b'{"x":1.5}').replace(b'"prediction":1', b'"prediction":null'),
        _event(b'{"x":1.5}').replace(b'"timestamp":1700000000', b'"timestamp":true'),
        _event(b'{"x":1.5}').replace(b'"model_id":"m"', b'"model_id":"\\u006d"'),
        b"[]",
        b"",
        b"{}",
    ],
)
def test_what_it_doubts_is_left_to_orjson(speedups, doubt: bytes) -> None:
    """Valid or not, a value the reader is not sure to read as orjson does is not its to read
    (the first message is good, the second carries the doubt)."""
    good = _event(b'{"x":1.5}')
    assert speedups.predictions([good, good]) is not None
    assert speedups.predictions([good, doubt]) is None


@pytest.mark.parametrize("second", [b'{"y":1.5}', b'{"x":1.5,"y":2.5}', b"{}", b'{"y":1.5,"x":2.5}'])
def test_features_must_name_what_the_first_message_names_in_its_order(speedups, second: bytes) -> None:
    first = _event(b'{"x":1.5,"y":2.5}' if second == b'{"y":1.5,"x":2.5}' else b'{"x":1.5}')
    assert speedups.predictions([first, _event(second)]) is None


def test_nesting_deeper_than_64_is_left_to_orjson(speedups) -> None:
    shallow = _event(b'{"x":1.5}', b',"extra":' + b"[" * 60 + b"]" * 60)
    deep = _event(b'{"x":1.5}', b',"extra":' + b"[" * 70 + b"]" * 70)
    assert speedups.predictions([shallow]) is not None
    assert speedups.predictions([deep]) is None


def test_a_column_turns_into_a_list_when_a_value_is_not_a_float(speedups) -> None:
    values = [_event(b'{"x":%s}' % v) for v in (b"1.5", b"null", b"2.5", b"3", b'"a"', b"true", b"null")]
    parsed = speedups.predictions(values)
    assert parsed[10] == [[1.5, None, 2.5, 3, "a", True, None]]
    assert parsed[10][0] == orjson.loads(b'[1.5, null, 2.5, 3, "a", true, null]')


def _mixed_messages(n: int, seed: int) -> list[RawMessage]:
    """Predictions whose columns change kind mid-stream: floats, then integers, strings, nulls."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        m = int(rng.integers(0, 3))
        f = {
            "a": float(rng.normal()),
            "b": float(rng.normal()) if rng.random() > 0.1 else None,
            "k": int(rng.integers(0, 5)) if i > n // 3 else float(rng.integers(0, 5)),
            "c": str(rng.choice(["u", "v", "w"])),
            "d": float(rng.normal()) if i < n // 2 else "late",
        }
        event = {
            "event_id": f"e{i}",
            "model_id": f"m{m}",
            "timestamp": 1_700_000_000 + i * 0.5,
            "features": f,
            "prediction": int(rng.random() > 0.5),
            "score": float(rng.random()),
        }
        out.append(RawMessage(PRED, m, i, f"m{m}".encode(), orjson.dumps(event)))
        if rng.random() < 0.5:
            fb = {
                "event_id": f"e{i}",
                "model_id": f"m{m}",
                "timestamp": 1_700_000_000 + i * 0.5 + 1,
                "label": int(rng.random() > 0.5),
            }
            out.append(RawMessage(FB, m, i, f"m{m}".encode(), orjson.dumps(fb)))
    return out


@pytest.mark.parametrize("stream", ["demo", "mixed"])
def test_monitors_end_in_the_same_state_with_or_without_the_reader(speedups, monkeypatch, stream: str) -> None:
    messages = demo_messages(12_000, drift_at=1500) if stream == "demo" else _mixed_messages(9_000, seed=5)
    settings = MonitorSettings(window_size=1000, reference_size=1000)
    with_reader, events = run_monitors(messages, 500, settings)
    monkeypatch.setattr(decode, "_speedups", None)
    without, expected = run_monitors(messages, 500, settings)
    assert state_bytes(with_reader) == state_bytes(without)
    assert events == expected
    assert any(e["kind"] == "data_drift" for e in events) or stream == "mixed"


def test_the_reader_takes_the_usual_poll(speedups) -> None:
    """What the benchmark and the demo send is read in C, not handed back."""
    messages = demo_messages(2_000)
    assert decode._decode_parsed([m for m in messages if m.topic == PRED]) is not None
    assert decode._decode_parsed_feedback([m for m in messages if m.topic == FB]) is not None


def _label(extra: bytes = b"") -> bytes:
    return b'{"event_id":"e","model_id":"m","timestamp":1700000000,"label":1' + extra + b"}"


def test_feedback_reads_labels_carried_predictions_scores_and_values(speedups) -> None:
    parsed = speedups.feedback([_label(), _label(b',"prediction":"a","score":0.25,"features":{"x":[1]},"value":-12')])
    event_ids, model_ids, versions, written, labels, carried, scores, values = parsed
    assert (labels, carried, versions, written) == ([1, 1], [None, "a"], [None, None], [1700000000] * 2)
    assert np.frombuffer(scores, np.float64).tolist()[1] == 0.25
    value = np.frombuffer(values, np.float64).tolist()
    assert math.isnan(value[0]) and value[1] == -12.0
    assert speedups.feedback([_label(), _label()])[5:] == (None, None, None)


@pytest.mark.parametrize(
    "doubt",
    [
        b'{"event_id":"e","model_id":"m","timestamp":1}',
        _label(b',"prediction":null'),
        _label(b',"label":2'),
        _label(b',"score":"0.5"'),
        _label(b',"value":"12"'),
        _label(b',"value":null'),
        _label(b',"value":1,"value":2'),
        _label().replace(b'"label":1', b'"label":{}'),
        _label(b',"x":"\\u0041"'),
    ],
)
def test_feedback_doubts_are_left_to_orjson(speedups, doubt: bytes) -> None:
    assert speedups.feedback([_label(), _label()]) is not None
    assert speedups.feedback([_label(), doubt]) is None


# -- snapshots: the arrays of a loaded skeleton ------------------------------------------------------


def test_the_snapshot_walk_in_c_replaces_what_the_python_walk_does_in_its_order(speedups) -> None:
    def tree() -> dict:
        return {
            "a": {"$nd": [0, "<i8", [1]]},
            "b": {"c": {"$nd": [8, "<i8", [1]]}, "d": [{"$nd": [16]}]},
            "e": {"$nd": None, "f": {"$nd": [24, "<i8", [1]]}},
            "g": "$nd",
            "h": {"$nd1": [1]},
            "i": 3,
        }

    calls: dict[str, list] = {"c": [], "py": []}
    walked = {}
    for name, walk in (("c", speedups.arrays), ("py", snapshot._walk)):
        walked[name] = tree()
        assert walk(walked[name], "$nd", lambda spec, seen=calls[name]: seen.append(spec) or f"array {spec[0]}") == 3
    assert walked["c"] == walked["py"] and calls["c"] == calls["py"]
    assert walked["c"]["b"] == {"c": "array 8", "d": [{"$nd": [16]}]}  # lists are never looked into
    assert walked["c"]["e"] == {"$nd": None, "f": "array 24"}  # a null marker is a plain key

    def refuse(spec: list) -> None:
        raise ValueError(f"refused {spec}")

    with pytest.raises(ValueError, match=r"refused \[0, '<i8', \[1\]\]"):
        speedups.arrays(tree(), "$nd", refuse)


def test_snapshots_load_the_same_with_and_without_the_c_walk(speedups, monkeypatch) -> None:
    monitors, _ = run_monitors(demo_messages(6_000, seed=3, drift_at=1500), 500, MonitorSettings())
    data = snapshot.dumps({m: mon.state() for m, mon in monitors.items()})
    with_c = snapshot.loads(data)
    dtype = re.search(rb'"[<|][iuf][1248]"', data)  # an array's dtype in the skeleton
    assert dtype is not None
    corrupt = data.replace(dtype.group(), dtype.group()[:-2] + b'7"', 1)
    with pytest.raises(KeyError):  # not a dtype a snapshot may hold (decode says: corrupt)
        snapshot.loads(corrupt)
    monkeypatch.setattr(snapshot, "_speedups", None)
    assert snapshot.dumps(snapshot.loads(data)) == snapshot.dumps(with_c) == data
    with pytest.raises(KeyError):
        snapshot.loads(corrupt)
