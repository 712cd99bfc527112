"""What a warm-up state writes of a column's distinct-number table (``warmup.sketch_state``).

A state writes a table's entries (counts, and a scored column's scored rows and score sums) in the order of
its numbers' texts (``str``); and where the texts are all ints' or all floats' in positional notation, the
numbers as integers that give the texts back (``decimal_table``), ascending, as the smallest, the steps from
one to the next and their counts; else the texts themselves. ``table_parts`` makes all of it from the table,
the plain path; ``_speedups.table_parts`` is its twin in C (``warmup.sketch_state`` takes it where it is
built): a fleet's model in its warm-up writes about a dozen such tables of a dozen numbers or more per
sketch at every checkpoint, and about fifteen Python steps per number (its text made, sorted, parsed back,
sorted again, its counts gathered twice) were most of the time of its state (issue 19). A number's text
is the one step C cannot take away. ``tests/unit/test_warmup_tables.py`` checks that both give equal parts.

Examples
--------
>>> parts = table_parts({2.5: 3, 10.25: 1, "-1.0": 2}, None, None)
>>> parts.decimals, parts.counted, (parts.first, parts.steps, parts.counts_by_number)
(2, [2, 1, 3], (-100, [350, 775], [2, 3, 1]))
>>> table_parts({3: 1, "3.0": 2}, None, None).texts  # an int's text and a float's: written as texts
['3', '3.0']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

Key = int | float | str  # a distinct number as its column keys it (``warmup._key``)

# a column's decimals at most: 10.0 ** this is exact, so division gives the texts back (``warmup._texts``)
MOST_DECIMALS = 22
# the integers' magnitude is below this
LARGEST = 2**50


class TableParts(NamedTuple):
    """What a state writes of one distinct-number table."""

    decimals: int | None  # the integers' scale: None, no integers (written by text); -1, ints' own; else decimals
    texts: list[str]  # without integers: the texts, sorted (else empty)
    counted: list[int]  # the counts, in the order of the texts
    scored: list[int] | None  # a scored column's scored rows in that order (None: not scored)
    sums: list[int] | None  # and its score sums
    first: int  # with integers: the smallest (else 0)
    steps: list[int]  # the steps from one integer to the next, ascending (each at least 1)
    counts_by_number: list[int]  # the counts in the order of the integers


def table_parts(
    table: Mapping[Key, int], scored: Mapping[Key, int] | None, sums: Mapping[Key, int] | None
) -> TableParts:
    """The parts of ``table`` (distinct keys, ``warmup._key`` each, with their counts; ``scored`` and
    ``sums`` a scored column's, by the same keys, or None)."""
    texts = {str(key): key for key in table}  # a str key is a float's text already
    ordered = sorted(texts)
    by_text = [texts[text] for text in ordered]
    counted = [table[key] for key in by_text]
    scored_rows = None if scored is None else [scored.get(key, 0) for key in by_text]
    score_sums = None if sums is None else [sums.get(key, 0) for key in by_text]
    made = decimal_table(ordered)
    if made is None:
        return TableParts(None, ordered, counted, scored_rows, score_sums, 0, [], [])
    decimals, numbers = made
    ranked = sorted(range(len(numbers)), key=numbers.__getitem__)
    ascending = [numbers[i] for i in ranked]
    steps = [b - a for a, b in zip(ascending, ascending[1:])]
    return TableParts(decimals, [], counted, scored_rows, score_sums, ascending[0], steps, [counted[i] for i in ranked])


def decimal_table(texts: Sequence[str]) -> tuple[int, list[int]] | None:
    """A distinct-number table's texts as integers that give them back exactly (``warmup._texts``): ``(-1,
    ints)`` where every text is an int's (``str(int)``), ``(decimals, each number times 10 ** decimals)``
    where every text is a float's in positional notation (``repr(float)``, as ``"-1.6016"``; not ``"-0.0"``,
    whose integer has no sign), each below ``LARGEST`` in magnitude; else None (the texts are written as
    they are).

    Why exactly: a float's text is the shortest that reads back as that float; ``m / 10 ** decimals``
    (Python's true division, correctly rounded) is that float, and ``repr`` of it the text again. Sorted,
    their steps are small: a short warm-up's distinct numbers cost about a third of their texts' bytes."""
    joined = "".join(texts)
    if "e" in joined or "n" in joined or "-0.0" in texts:  # an exponent, inf or nan; -0.0
        return None
    dots = joined.count(".")
    if dots == 0:
        decimals, numbers = -1, [int(text) for text in texts]
    elif dots == len(texts):
        places = [len(text) - text.index(".") - 1 for text in texts]
        decimals = max(places)
        if decimals > MOST_DECIMALS:
            return None
        numbers = [int(text.replace(".", "")) * 10 ** (decimals - p) for text, p in zip(texts, places)]
    else:  # ints and floats
        return None
    return (decimals, numbers) if -LARGEST < min(numbers) and max(numbers) < LARGEST else None
