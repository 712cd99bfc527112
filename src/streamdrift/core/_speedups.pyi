# The types of the C module built from _speedups.c (setup.py), for mypy: it cannot read a compiled module.
# The docstrings of _speedups.c say what each function returns; decode.py and state.py work without it.

from collections.abc import Callable
from typing import Any

def predictions(
    values: list[bytes | None], /
) -> (
    tuple[
        list[Any],  # event_ids
        list[Any],  # model_ids
        list[Any],  # versions (None where absent)
        list[Any],  # timestamps as written
        list[Any],  # outputs
        bytes | None,  # scores: n doubles, NaN where absent; None when no value has one
        list[dict[str, Any] | None] | None,  # class_scores
        list[dict[str, Any] | None] | None,  # segments
        tuple[str, ...],  # feature names
        bytes,  # len(names) x n doubles: the float-and-null columns
        list[list[Any] | None],  # per name, its values, or None for a column in the block
    ]
    | None
): ...
def feedback(
    values: list[bytes | None], /
) -> (
    tuple[
        list[Any],  # event_ids
        list[Any],  # model_ids
        list[Any],  # versions
        list[Any],  # timestamps as written
        list[Any],  # labels
        list[Any] | None,  # carried predictions; None when no value has one
        bytes | None,  # scores: n doubles; None when none has one
        bytes | None,  # values: n doubles, NaN where absent; None when none has one
    ]
    | None
): ...
def arrays(tree: dict[str, Any], marker: str, make: Callable[[list[Any]], Any], /) -> int: ...
def count_numbers(
    distinct: dict[int | float | str, int],
    scored: dict[int | float | str, int],
    sums: dict[int | float | str, int],
    numbers: list[Any],
    scores: list[int] | None,
    limit: int,
    /,
) -> bool: ...
def add_floats(
    values: Any,  # a one-dimensional buffer of doubles (a float64 array)
    scores: list[int] | None,
    distinct: dict[int | float | str, int] | None,
    scored: dict[int | float | str, int],
    sums: dict[int | float | str, int],
    pending: list[Any],
    pending_scores: list[int],
    limit: int,
    /,
) -> tuple[int, bool]: ...
def add_categories(
    values: list[Any],
    scores: list[int] | None,
    kept: dict[str, int],
    scored: dict[str, int],
    sums: dict[str, int],
    max_kept: int,
    /,
) -> tuple[int, int, int] | None: ...
def table_parts(
    table: dict[int | float | str, int],
    scored: dict[int | float | str, int] | None,
    sums: dict[int | float | str, int] | None,
    /,
) -> tuple[int | None, list[str], list[int], list[int] | None, list[int] | None, int, list[int], list[int]]: ...
def merge_buckets(
    new_keys: Any,  # int64 buffers: one dimension, the scores' two
    new_sizes: list[int],
    new_scores: list[list[int] | None],
    old_keys: Any,
    old_counts: Any,
    old_scores: Any,
    old_sizes: list[int],
    out_keys: Any,
    out_counts: Any,
    out_scores: Any,
    /,
) -> list[int]: ...
