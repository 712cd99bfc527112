"""Log-spaced buckets, as DDSketch's: the geometry a warm-up column counts its numbers in (``warmup.py``).

Bucket ``k`` holds the ``x`` with ``lower(k) <= x < lower(k + 1)``; above and below zero mirrored around a
zero bucket ``[-SMALLEST, SMALLEST)``; relative width ``2 * ACCURACY``, about 1 %. ``bucket_keys`` is the
plain path, numpy over a whole array; ``buckets_small.bucket_keys_small`` gives the same keys for a handful
of numbers without its dozen numpy calls.

Examples
--------
>>> import numpy as np
>>> keys = bucket_keys(np.array([0.0, 1.0, -1.0, 2.5]))
>>> keys.tolist()
[0, 6909, -6908, 7000]
>>> bool(lower(keys[3]) <= 2.5 < lower(keys[3] + 1))
True
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

ACCURACY = 0.005  # relative accuracy of a bucket's middle (DDSketch's alpha)
GAMMA = (1 + ACCURACY) / (1 - ACCURACY)
LOG_GAMMA = math.log(GAMMA)
SMALLEST_EXPONENT = math.floor(math.log(1e-30) / LOG_GAMMA)  # |x| below GAMMA ** this: the zero bucket
SMALLEST = GAMMA**SMALLEST_EXPONENT
LARGEST = 1e300  # larger magnitudes (the decoder bounds them far lower) share the outermost buckets


def lower(keys: NDArray[np.int64] | int) -> NDArray[np.float64]:
    """The lower boundary of buckets ``keys`` (the upper boundary of ``k`` is ``lower(k + 1)``)."""
    k = np.asarray(keys, dtype=np.int64)
    exponent = np.where(k > 0, k - 1 + SMALLEST_EXPONENT, np.where(k < 0, -k + SMALLEST_EXPONENT, SMALLEST_EXPONENT))
    magnitude = np.power(GAMMA, exponent.astype(np.float64))
    return np.where(k > 0, magnitude, -magnitude)


def bucket_keys(x: NDArray[np.float64]) -> NDArray[np.int64]:
    """Each finite value's bucket: the ``k`` with ``lower(k) <= x < lower(k + 1)``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        log = np.log(np.clip(np.abs(x), SMALLEST, LARGEST))
    log *= 1 / LOG_GAMMA
    keys = np.where(x >= 0, np.floor(log) + (1 - SMALLEST_EXPONENT), SMALLEST_EXPONENT - np.ceil(log))
    keys[np.abs(x) < SMALLEST] = 0
    out: NDArray[np.int64] = keys.astype(np.int64)
    # the logarithm may be a last bit off near a boundary: there, the boundaries themselves decide
    near = np.flatnonzero(np.abs(log - np.rint(log)) < 1e-6)
    if len(near):
        at, k = x[near], out[near]
        k -= at < lower(k)
        k += at >= lower(k + 1)
        out[near] = k
    return out
