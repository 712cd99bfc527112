"""``streamdrift alerts`` prints what it reads and survives what it cannot print."""

from __future__ import annotations

import orjson

from streamdrift.cli.alerts import print_alerts

EVENT = {
    "model_id": "m1",
    "kind": "data_drift",
    "severity": "warning",
    "action": "retrain",
    "detector": "chi2",
    "top_features": [{"feature": "x", "score": 0.5}],
    "statistic": 12.0,
    "threshold": 9.0,
}


class _Record:
    def __init__(self, value: bytes | None):
        self._value = value

    def error(self) -> None:
        return None

    def value(self) -> bytes | None:
        return self._value


class _Consumer:
    def __init__(self, values: list[bytes | None]):
        self.records = [_Record(v) for v in values]

    def consume(self, num_messages: int, timeout: float) -> list[_Record]:
        return self.records


def test_a_record_without_value_is_skipped_not_a_crash(capsys):
    event = orjson.dumps(EVENT)
    count = print_alerts(_Consumer([None, event]), 0.0, summary=True)
    out, err = capsys.readouterr()
    assert count == 2
    assert out == event.decode() + "\n"
    assert err == "DRIFT m1 data_drift (warning, action retrain): chi2 x 0.50\n"
