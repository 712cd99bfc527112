"""Class names of labels, the task they imply, and registries of names (classes, segment values, versions).

Classification labels may be str, int or bool; they become class names by
``label_keys`` (``1``, ``1.0``, ``"1"`` and ``True`` are the same class, ``"1"``),
numbered in order of first appearance by a ``Registry``, capped (``__other__``
takes the rest).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Task = Literal["classification", "regression"]
CLASSIFICATION: Task = "classification"
REGRESSION: Task = "regression"
OTHER = "__other__"
MISSING = "__missing__"


def _key(value: object, missing: str) -> str:
    if value is None:
        return missing
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _number_keys(x: np.ndarray, missing: str) -> np.ndarray:
    whole = np.isfinite(x) & (x == np.round(x)) & (np.abs(x) < 2.0**63)
    ints = np.where(whole, x, 0).astype(np.int64).astype(str)
    return np.where(np.isnan(x), missing, np.where(whole, ints, x.astype(str)))


# the names of small class numbers, as int64's astype(str) writes them (dtype <U21): a batch of the
# usual labels (0, 1, 2...) is named by indexing this, where astype(str) would format every number
_SMALL_INT_KEYS = np.arange(256, dtype=np.int64).astype(str)
_SMALL_INT_KEYS.flags.writeable = False
_FEW = 16  # up to this many labels, their bounds are checked in Python rather than in an array of them


def _int_keys(ints: np.ndarray) -> np.ndarray:
    """``ints.astype(str)`` of an int64 array."""
    if len(ints) and np.minimum.reduce(ints) >= 0 and np.maximum.reduce(ints) < len(_SMALL_INT_KEYS):
        return _SMALL_INT_KEYS[ints]
    return ints.astype(str)


def label_keys(values: list | np.ndarray, missing: str = "null") -> np.ndarray:
    """Class names of labels: strings, where ``True`` is ``"1"`` and ``2.0`` is ``"2"``.

    >>> label_keys([True, 0, 2.0, "cat", None]).tolist()
    ['1', '0', '2', 'cat', 'null']
    """
    if isinstance(values, np.ndarray):
        kind = values.dtype.kind
        if kind == "b":
            return np.where(values, "1", "0")
        if kind in "iu":
            return values.astype(str)
        if kind == "f":
            return _number_keys(values.astype(np.float64), missing)
        if kind == "U":
            return values
        values = values.tolist()
    values = list(values)
    if not values:
        return np.empty(0, dtype="<U1")
    types = set(map(type, values))
    if types == {str}:
        return np.array(values, dtype=str)
    if types == {int}:  # the usual class labels: 0, 1, 2...
        if len(values) <= _FEW and min(values) >= 0 and max(values) < len(_SMALL_INT_KEYS):
            return _SMALL_INT_KEYS[values]  # a fleet model's few graded rows: no int64 array made first
        try:
            return _int_keys(np.fromiter(values, np.int64, len(values)))
        except OverflowError:  # beyond int64: as floats below
            pass
    if types <= {int, float, bool, type(None)} and types != {type(None)}:
        return _number_keys(np.array(values, dtype=np.float64), missing)
    return np.array([_key(v, missing) for v in values], dtype=str)


def infer_task(labels: list | np.ndarray, predictions: list | np.ndarray) -> Task:
    """``"regression"`` when some label or prediction is a non-integer number, else ``"classification"``.

    >>> infer_task([1, 0, 1], [1, 1, 0]), infer_task(["a"], ["b"]), infer_task([2.5, 1.0], [2.0, 1.5])
    ('classification', 'classification', 'regression')
    """
    values = [*as_list(labels), *as_list(predictions)]
    types = set(map(type, values)) - {type(None)}
    if float in types and types <= {int, float}:
        x = np.array([v for v in values if v is not None], dtype=np.float64)
        if np.any(np.isfinite(x) & (x != np.round(x))):
            return REGRESSION
    return CLASSIFICATION


def as_list(values: list | np.ndarray) -> list:
    return values.tolist() if isinstance(values, np.ndarray) else list(values)


class Registry:
    """Names (classes, segment values, versions) numbered in order of first appearance, capped.

    Names beyond ``cap`` share ``__other__``; ``since`` is the stream row at
    which each name was registered.
    """

    def __init__(self, cap: int):
        self.cap = cap
        self._reset()

    def _reset(self) -> None:
        self.names: list[str] = []
        self.since: list[int] = []
        self.overflow = 0  # values that fell into __other__
        self._index: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int | None:
        return self._index.get(name)

    def register(self, keys: np.ndarray, rows: np.ndarray) -> None:
        """Register ``keys`` (in stream order; ``rows`` their stream rows) not seen before."""
        names = keys.tolist()
        if not names or self._index.keys() >= set(names):  # nothing new: the usual case
            return
        # row by row, each name at its first row: a set was made of them all already, and np.unique with an
        # argsort cost more than this loop for the few rows that bring a new model's first names (issue 19)
        for name, row in zip(names, rows.tolist()):
            if name in self._index:
                continue
            if len(self.names) - (OTHER in self._index) < self.cap:
                self._add(name, int(row))
            elif OTHER not in self._index:
                self._add(OTHER, int(row))

    def _add(self, name: str, row: int) -> None:
        self._index[name] = len(self.names)
        self.names.append(name)
        self.since.append(row)

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Index of each key (registered first); counts those that fall into ``__other__``."""
        try:  # the usual case, every key registered: one dict lookup each
            return np.fromiter(map(self._index.__getitem__, keys.tolist()), dtype=np.int64, count=len(keys))
        except KeyError:  # some fall into __other__: counted below
            pass
        uniq, inverse = np.unique(keys, return_inverse=True)
        other = self._index.get(OTHER, -1)
        lut = np.array([self._index.get(str(u), other) for u in uniq], dtype=np.int64)
        spilled = np.array([str(u) not in self._index for u in uniq], dtype=bool)
        self.overflow += int(spilled[inverse].sum())
        return lut[inverse.reshape(-1)]

    def state(self) -> dict:
        return {"names": self.names, "since": self.since, "overflow": self.overflow}

    def load_state(self, state: dict) -> None:
        self.names, self.since = list(state["names"]), list(state["since"])
        self.overflow = state["overflow"]
        self._index = {name: i for i, name in enumerate(self.names)}
