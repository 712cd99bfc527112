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


def _summary(event: dict, capsys) -> str:
    print_alerts(_Consumer([orjson.dumps(event)]), 0.0, summary=True)
    return capsys.readouterr().err


def test_the_summary_of_a_retrain_event_names_its_training_window(capsys):
    window = {
        "start_time": "2026-12-05T00:03:00.000Z",
        "end_time": "2026-12-05T00:03:39.000Z",
        "exclude": [
            {
                "start_time": "2026-12-05T00:03:00.000Z",
                "end_time": "2026-12-05T00:03:19.000Z",
                "reason": "data_quality: missing_rate of income",
            }
        ],
    }
    assert _summary({**EVENT, "training_window": window}, capsys) == (
        "DRIFT m1 data_drift (warning, action retrain): chi2 x 0.50; "
        "train on 2026-12-05T00:03:00.000Z .. 2026-12-05T00:03:39.000Z, 1 stretch excluded\n"
    )


def test_the_summary_of_a_retrain_over_budget_says_when_the_next_is_allowed(capsys):
    budget = {"used": 1, "limit": 1, "period_s": 3600.0, "next_allowed_at": "2026-12-05T01:03:39.000Z"}
    assert _summary({**EVENT, "action": "investigate", "budget": budget}, capsys) == (
        "DRIFT m1 data_drift (warning, action investigate): chi2 x 0.50; "
        "over retrain budget: 1 of 1 per 3600 s used, next retrain allowed at 2026-12-05T01:03:39.000Z\n"
    )
