"""Regression metrics over a sliding window and since the start."""

from __future__ import annotations

import numpy as np

from streamdrift.core.metrics.labels import as_list
from streamdrift.core.metrics.windows import Windowed, ordered_sum

_REG = ("rows", "error", "abs_error", "squared_error", "shifted", "shifted_squared", "nonzero", "ape")


class RegressionMetrics(Windowed):
    """MAE, RMSE, R², MAPE and mean error, from sums per sub-window.

    Sums are taken in row order (so any batching gives the same bits); targets
    are shifted by the first target seen before squaring, which keeps R²
    accurate when targets are large and vary little. MAPE skips zero targets
    (counted, ``zero_targets``); rows with a missing or non-numeric value are
    counted (``invalid``) and skipped.

    The report is computed in float64 numpy arithmetic, which overflows to
    infinity instead of raising (Python floats raise ``OverflowError`` on
    ``x ** 2``); a value that is not finite is reported as None. The decoder
    bounds numbers (``config.InputBounds.max_abs_number``, 1e15), so with events
    that passed it every value stays finite but MAPE: a target tiny against its
    error (5e-324 and 1) has a percentage error beyond any float, and MAPE is
    None while that row is in the window (in the cumulative report, from then on).

    Parameters
    ----------
    window_size
        Rows in the sliding window.
    subwindows
        Sub-windows the window slides by; must divide ``window_size``.

    Examples
    --------
    >>> m = RegressionMetrics(window_size=4, subwindows=2)
    >>> [(w["position"], w["row"], w["report"]["mae"]) for w in m.update([3.0, -0.5, 2.0, 7.0, 0.0], [2.5, 0.0, 2.0, 8.0, 1.0])]
    [(4, 3, 0.5)]
    >>> r = m.report("window")
    >>> r["mae"], r["rmse"], round(r["r2"], 4), round(r["mape"], 4)
    (0.5, 0.6123724356957945, 0.9486, 0.3274)
    >>> m.report("cumulative")["zero_targets"]
    1
    """

    def __init__(self, window_size: int, subwindows: int = 5):
        self.window_size = window_size
        self.subwindows = subwindows
        self._check_window()
        self._reset()

    def _reset(self) -> None:
        self.rows = 0
        self.invalid = 0
        self.shift: float | None = None
        self.sums = np.zeros((self.subwindows + 2, len(_REG)), dtype=np.float64)

    def update(self, y_true: list | np.ndarray, y_pred: list | np.ndarray) -> list[dict]:
        """Add rows; return, per window completed within them, its ``position``, ``row`` and ``report``
        (as of that row: a batch may close several windows)."""
        y, yhat = _floats(y_true), _floats(y_pred)
        valid = _valid(y, yhat)
        self.invalid += int((~valid).sum())
        y, yhat = y[valid], yhat[valid]
        positions = np.flatnonzero(valid)  # the batch row each valid row came from
        if self.shift is None and len(y):
            self.shift = float(y[0])
        error = y - yhat
        shifted = y - (self.shift or 0.0)
        nonzero = y != 0
        with np.errstate(over="ignore", invalid="ignore"):  # beyond the decoder's bounds: infinite, never raising
            ape = np.divide(np.abs(error), np.abs(y), out=np.zeros_like(y), where=nonzero)
            terms = np.stack(
                [np.ones_like(y), error, np.abs(error), error**2, shifted, shifted**2, nonzero.astype(np.float64), ape],
                axis=1,
            )
        completed = []
        for slot, a, b, fresh, closes in self._chunks(len(y)):
            if fresh:
                self.sums[slot] = 0
            self.sums[slot] = ordered_sum(self.sums[slot], terms[a:b])
            self.sums[self._cumulative] = ordered_sum(self.sums[self._cumulative], terms[a:b])
            self.rows += b - a
            if closes and self._window_complete():
                completed.append({"position": self.rows, "row": int(positions[b - 1]), "report": self.report("window")})
        return completed

    def report(self, scope: str = "window") -> dict:
        sums = dict(zip(_REG, self.sums[self._slots(scope)].sum(axis=0)))
        n = sums["rows"]
        out = {"scope": scope, "rows": int(n), "zero_targets": int(n - sums["nonzero"]), "invalid": self.invalid}
        if not n:
            return {**out, "mae": None, "rmse": None, "r2": None, "mape": None, "mean_error": None, "mae_se": None}
        with np.errstate(over="ignore", invalid="ignore"):
            mae = sums["abs_error"] / n
            mse = sums["squared_error"] / n
            total = sums["shifted_squared"] - sums["shifted"] ** 2 / n
            out.update(
                mae=_finite(mae),
                rmse=_finite(np.sqrt(mse)),
                mean_error=_finite(sums["error"] / n),
                r2=_finite(1 - sums["squared_error"] / total) if total > 0 else None,
                mape=_finite(sums["ape"] / sums["nonzero"]) if sums["nonzero"] else None,
                mae_se=_finite(np.sqrt(max(mse - mae * mae, 0.0) / n)),
            )  # standard error of the MAE
        return out

    def state(self) -> dict:
        return {"rows": self.rows, "invalid": self.invalid, "shift": self.shift, "sums": self.sums.copy()}

    def load_state(self, state: dict) -> None:
        self.rows, self.invalid, self.shift = state["rows"], state["invalid"], state["shift"]
        self.sums = np.array(state["sums"], dtype=np.float64).reshape(self.subwindows + 2, len(_REG))


def counted_rows(y_true: list | np.ndarray, y_pred: list | np.ndarray) -> np.ndarray:
    """The rows ``RegressionMetrics.update`` counts (a number on both sides), as indices.

    >>> counted_rows([1.0, None, 2.5], [0.5, 1.0, "x"]).tolist()
    [0]
    """
    return np.flatnonzero(_valid(_floats(y_true), _floats(y_pred)))


def _finite(x: np.floating) -> float | None:
    """A float64 result as a Python float, None where it overflowed or is undefined."""
    return float(x) if np.isfinite(x) else None


def _valid(y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
    return np.isfinite(y) & np.isfinite(yhat)


def _floats(values: list | np.ndarray) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiub":
        return values.astype(np.float64)
    return np.array([v if type(v) in (int, float) else None for v in as_list(values)], dtype=np.float64)
