"""The bucket keys of a handful of numbers in plain Python: ``buckets.bucket_keys``'s, without its numpy calls.

Every warm-up column buckets its first number on its own, for its anchor (``warmup.WarmupColumn.add``):
``bucket_keys`` costs a dozen numpy calls whatever the numbers, about 30 µs, and 2,000 models of 23 numeric
columns made that a tenth of a worker's time in their warm-up (issue 19). Here a number costs a ``math.log``
(about 1 µs): cheaper than numpy up to about 30 numbers.

The keys are those of ``bucket_keys``, number for number (``tests/unit/test_buckets.py``). ``math.log`` and
numpy's ``log`` may differ in their last bit, which can move a key only where the logarithm is that close to an
integer, a bucket boundary; where the logarithm is within ``NEAR`` of one, the key is set by comparing the
number with the boundaries themselves (``lower``), as ``bucket_keys`` does: from a key one off either way,
both come to the one bucket whose boundaries hold the number. (Such numbers are common: a 0/1 column's anchor
is a boundary, and then so is every one of its numbers.)

Examples
--------
>>> import numpy as np
>>> from streamdrift.core.buckets import bucket_keys
>>> values = [0.0, 1.0, -1.0, 2.5, 3, -1e-40, 1e15]
>>> bucket_keys_small(values) == bucket_keys(np.array(values, dtype=np.float64)).tolist()
True
>>> lower_of(7000) == float(lower(7000))
True
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from streamdrift.core.buckets import LARGEST, LOG_GAMMA, SMALLEST, SMALLEST_EXPONENT, bucket_keys, lower

NEAR = 1e-6  # as bucket_keys: a logarithm this close to an integer is decided by the boundaries
_SCALE = 1 / LOG_GAMMA  # as bucket_keys scales: by this product, not a division


def bucket_keys_small(values: list[float]) -> list[int]:
    """``bucket_keys(np.array(values, dtype=np.float64)).tolist()``."""
    return [bucket_key(value) for value in values]


def bucket_key(value: float) -> int:
    """``bucket_keys_small([value])[0]``: a warm-up column's anchor is its first number's bucket."""
    x = float(value)
    if not math.isfinite(x):  # whatever numpy makes of it (the warm-up counts NaN as missing: never from there)
        return int(bucket_keys(np.array([x]))[0])
    magnitude = abs(x)
    if magnitude < SMALLEST:
        return 0
    log = math.log(min(magnitude, LARGEST)) * _SCALE
    key = math.floor(log) + (1 - SMALLEST_EXPONENT) if x >= 0 else SMALLEST_EXPONENT - math.ceil(log)
    if abs(log - round(log)) < NEAR:  # at a boundary, as bucket_keys: the boundaries decide
        key -= x < lower_of(key)
        key += x >= lower_of(key + 1)
    return key


@lru_cache(maxsize=4096)
def lower_of(key: int) -> float:
    """``float(lower(key))``, once per key: a warm-up column's anchor is the lower boundary of its first
    number's bucket, and a fleet's columns share few of them."""
    return float(lower(key))
