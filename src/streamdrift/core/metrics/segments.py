"""Metrics per segment of the predictions, and fairness gaps for a sensitive attribute."""

from __future__ import annotations

import numpy as np

from streamdrift.core.metrics.labels import MISSING, OTHER, Registry, label_keys
from streamdrift.core.metrics.windows import Windowed, grown, ratio

_SEG = ("rows", "correct", "predicted_positive", "actual_positive", "true_positive")


class SegmentMetrics(Windowed):
    """Accuracy and positive rates per segment value, and fairness gaps for a sensitive attribute.

    For each attribute of the predictions' ``segment`` field named in
    ``attributes``, the first ``max_segments`` values seen are tracked (a
    missing value is ``__missing__``); later values share ``__other__``
    (counted). Gaps compare the tracked segments of ``sensitive_attribute``
    with at least ``min_count`` rows (``__other__`` and ``__missing__`` aside):
    the demographic parity difference is the spread (max − min) of their rates
    of positive predictions, the equal opportunity difference the spread of
    their true positive rates (segments with ``min_count`` positives).

    Parameters
    ----------
    attributes
        Segment attributes to slice by.
    window_size
        Rows in the sliding window.
    subwindows
        Sub-windows the window slides by; must divide ``window_size``.
    max_segments
        Values tracked per attribute.
    positive_label
        The positive class (``label_keys`` of it).
    sensitive_attribute
        The attribute whose fairness gaps are reported, or None.
    min_count
        Rows (positives, for the true positive rate) a segment needs to enter a gap.

    Examples
    --------
    >>> m = SegmentMetrics(["sex"], window_size=6, subwindows=2, sensitive_attribute="sex", min_count=2)
    >>> m.update([1, 0, 1, 1, 0, 1], [1, 0, 1, 0, 1, 1],
    ...          [{"sex": "f"}, {"sex": "f"}, {"sex": "f"}, {"sex": "m"}, {"sex": "m"}, {"sex": "m"}])
    >>> r = m.report("window")
    >>> r["segments"]["sex"]["m"]
    {'rows': 3, 'accuracy': 0.3333333333333333, 'positive_rate': 0.6666666666666666, 'tpr': 0.5}
    >>> gaps = r["fairness"]
    >>> gaps["segments"], gaps["demographic_parity_difference"], gaps["equal_opportunity_difference"]
    (['f', 'm'], 0.0, 0.5)
    """

    def __init__(
        self,
        attributes: list[str],
        window_size: int,
        subwindows: int = 5,
        max_segments: int = 20,
        positive_label: str | int | bool = "1",
        sensitive_attribute: str | None = None,
        min_count: int = 30,
    ):
        self.attributes = attributes
        self.window_size = window_size
        self.subwindows = subwindows
        self.max_segments = max_segments
        self.positive_label = positive_label
        self.sensitive_attribute = sensitive_attribute
        self.min_count = min_count
        self._check_window()
        self._reset()

    def _reset(self) -> None:
        self.rows = 0
        self.values = {a: Registry(self.max_segments) for a in self.attributes}
        self.counts = {a: np.zeros((self.subwindows + 2, 0, len(_SEG)), dtype=np.int64) for a in self.attributes}

    def update(self, y_true: list | np.ndarray, y_pred: list | np.ndarray, segments: list[dict | None]) -> None:
        truth, predicted = label_keys(y_true), label_keys(y_pred)
        positive = str(label_keys([self.positive_label])[0])
        actual_pos, predicted_pos = truth == positive, predicted == positive
        measures = np.stack(
            [
                np.ones(len(truth), dtype=bool),
                truth == predicted,
                predicted_pos,
                actual_pos,
                actual_pos & predicted_pos,
            ],
            axis=1,
        ).astype(np.int64)
        index = {}
        for attribute, registry in self.values.items():
            keys = label_keys([s.get(attribute) if s else None for s in segments], missing=MISSING)
            registry.register(keys, np.arange(self.rows, self.rows + len(keys)))
            index[attribute] = registry.lookup(keys)
            grow = len(registry) - self.counts[attribute].shape[1]
            if grow:
                self.counts[attribute] = grown(self.counts[attribute], 0, grow, 0)
        for slot, a, b, fresh, _ in self._chunks(len(truth)):
            for attribute, counts in self.counts.items():
                if fresh:
                    counts[slot] = 0
                n = counts.shape[1]
                flat = (index[attribute][a:b, None] * len(_SEG) + np.arange(len(_SEG))).ravel()
                counts[[slot, self._cumulative]] += (
                    np.bincount(flat, weights=measures[a:b].ravel(), minlength=n * len(_SEG))
                    .astype(np.int64)
                    .reshape(n, len(_SEG))
                )
            self.rows += b - a

    def report(self, scope: str = "window") -> dict:
        slots = self._slots(scope)
        segments, fairness = {}, None
        for attribute, registry in self.values.items():
            counts = self.counts[attribute][slots].sum(axis=0)
            per_value = {}
            for name, (rows, correct, pred_pos, actual_pos, tp) in zip(registry.names, counts.tolist()):
                if rows:
                    per_value[name] = {
                        "rows": rows,
                        "accuracy": correct / rows,
                        "positive_rate": pred_pos / rows,
                        "tpr": ratio(tp, actual_pos),
                    }
            segments[attribute] = per_value
            if attribute == self.sensitive_attribute:
                fairness = self._gaps(attribute, per_value, dict(zip(registry.names, counts[:, 3].tolist())))
        return {
            "scope": scope,
            "segments": segments,
            "fairness": fairness,
            "overflow": {a: r.overflow for a, r in self.values.items()},
        }

    def _gaps(self, attribute: str, per_value: dict, positives: dict) -> dict:
        compared = {k: v for k, v in per_value.items() if k not in (OTHER, MISSING) and v["rows"] >= self.min_count}
        rates = [v["positive_rate"] for v in compared.values()]
        tprs = [v["tpr"] for k, v in compared.items() if positives[k] >= self.min_count]
        return {
            "attribute": attribute,
            "segments": sorted(compared),
            "demographic_parity_difference": max(rates) - min(rates) if len(rates) > 1 else None,
            "equal_opportunity_difference": max(tprs) - min(tprs) if len(tprs) > 1 else None,
        }

    def state(self) -> dict:
        return {
            "rows": self.rows,
            "values": {a: r.state() for a, r in self.values.items()},
            "counts": {a: c.copy() for a, c in self.counts.items()},
        }

    def load_state(self, state: dict) -> None:
        self.rows = state["rows"]
        for attribute, registry in self.values.items():
            registry.load_state(state["values"][attribute])
            self.counts[attribute] = np.array(state["counts"][attribute], dtype=np.int64).reshape(
                self.subwindows + 2, len(registry), len(_SEG)
            )
