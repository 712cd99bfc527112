"""Reference profiles: a model's training data, summarised for drift detection.

``streamdrift reference build`` reads training data shaped like prediction
events (JSONL) or a CSV with a header, and writes a profile: per feature its
type, bin edges or categories and reference counts (``sketch.Column``), the
same for the model's outputs and the labels, for each feature's bin its rows with a
``score`` and their score sum (``score_counts``, ``score_sums``: the model's mean score
per bin, for ``drift_impact``), the reference error rate when
labels and predictions are both present, and a bounded, seeded sample of
rows for calibration checks. A model configured with ``[models.<id>]
profile = "…"`` is monitored against it from its first event, with no
warm-up.

A profile is JSON with a format name and version; loading checks both and the
shape of every column, and never executes anything from the file.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import orjson

from streamdrift.core import impact
from streamdrift.core.config import MonitorSettings
from streamdrift.core.errors import ConfigError
from streamdrift.core.sketch import NUMERIC, Column
from streamdrift.core.stats import chi2_critical

FORMAT = "streamdrift-profile"
VERSION = 1
SCORE_KEYS = ("score_counts", "score_sums")  # a feature column's scores per bin (fixed point, impact.SCALE)
SPECIAL = {"event_id", "model_id", "model_version", "timestamp", "prediction", "score", "label", "segment"}
FAMILIES = 4  # keep in step with monitor.FAMILIES

# A profile as written to and read from JSON: "format", "version", "model_id", "rows", the columns of
# "features", "outputs" and "labels" (each ``Column.state()``), "metrics" and "sample"
Profile: TypeAlias = dict[str, Any]


def read_rows(path: Path) -> Iterator[dict[str, Any]]:
    """Rows as prediction-shaped dicts, from JSONL or CSV (by file extension)."""
    if path.suffix.lower() == ".csv":
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                features = {k: _csv_value(v) for k, v in row.items() if k not in SPECIAL}
                out: dict[str, Any] = {"features": features}
                for key in ("prediction", "score", "label"):
                    if row.get(key) not in (None, ""):
                        out[key] = _csv_value(row[key])
                yield out
        return
    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    row = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    raise ConfigError(f"{path}:{number}: invalid JSON: {exc}") from None
                if not isinstance(row, dict) or not isinstance(row.get("features"), dict):
                    raise ConfigError(f"{path}:{number}: expected an object with a 'features' object")
                yield row


def _csv_value(text: str) -> float | int | str | None:
    if text == "":
        return None
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number


def build_profile(
    model_id: str, rows: Iterable[dict[str, Any]], settings: MonitorSettings, sample_size: int = 1000, seed: int = 0
) -> Profile:
    """The profile of ``rows`` (prediction-shaped dicts, optionally with ``label``)."""
    features: dict[str, list[Any]] = {}
    predictions: list[Any] = []
    scores: list[Any] = []
    labels: list[Any] = []
    n = 0
    for row in rows:
        for name in row["features"].keys() - features.keys():
            features[name] = [None] * n
        for name, column in features.items():
            column.append(row["features"].get(name))
        predictions.append(row.get("prediction"))
        scores.append(row.get("score"))
        labels.append(row.get("label"))
        n += 1
    if n == 0:
        raise ConfigError("the input has no rows: a profile needs training data")
    names = sorted(features)[: settings.max_features]

    def fit(name: str, values: list[Any]) -> dict[str, Any]:
        return Column.fit(name, values, settings.bins, settings.max_categories).state()

    fixed = impact.fixed(np.array([impact_score(s) for s in scores], dtype=np.float64))

    def fit_feature(name: str, values: list[Any]) -> dict[str, Any]:
        column = Column.fit(name, values, settings.bins, settings.max_categories)
        counts, sums = column.scores_of(values, fixed).tolist()
        return {**column.state(), "score_counts": counts, "score_sums": sums}

    outputs = {"prediction": predictions}
    if any(s is not None for s in scores):
        outputs["score"] = scores
    graded = [(p, y) for p, y in zip(predictions, labels) if p is not None and y is not None]
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(n, size=min(sample_size, n), replace=False)).tolist()
    return {
        "format": FORMAT,
        "version": VERSION,
        "model_id": model_id,
        "rows": n,
        "features": [fit_feature(name, features[name]) for name in names],
        "outputs": [
            fit(name, values) for name, values in sorted(outputs.items()) if any(v is not None for v in values)
        ],
        "labels": [fit("label", labels)] if any(y is not None for y in labels) else [],
        "metrics": {"error_rate": sum(p != y for p, y in graded) / len(graded), "labelled": len(graded)}
        if graded
        else {},
        "sample": [{name: features[name][i] for name in names} for i in keep],
    }


def load_profile(path: Path) -> Profile:
    """Read and check a profile; a ``ConfigError`` says what is wrong and how to fix it."""
    try:
        profile = orjson.loads(Path(path).read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"profile {path} does not exist; build it with `streamdrift reference build`") from None
    except orjson.JSONDecodeError as exc:
        raise ConfigError(
            f"profile {path} is not JSON ({exc}); rebuild it with `streamdrift reference build`"
        ) from None
    if not isinstance(profile, dict) or profile.get("format") != FORMAT or profile.get("version") != VERSION:
        raise ConfigError(
            f"{path} is not a {FORMAT} version {VERSION} file; rebuild it with `streamdrift reference build`"
        )
    for part in ("features", "outputs", "labels"):
        for column in profile.get(part, []):
            try:
                checked = Column(**_column_fields(column))
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{path}: a column of '{part}' is malformed ({exc}); rebuild the profile") from None
            if len(checked.ref_counts) != checked.n_bins:
                raise ConfigError(
                    f"{path}: column {checked.name!r} has {len(checked.ref_counts)} counts for "
                    f"{checked.n_bins} bins; rebuild the profile"
                )
            for key in SCORE_KEYS:
                values = column.get(key, [])
                if key in column and (
                    not isinstance(values, list)
                    or len(values) != checked.n_bins
                    or not all(type(v) is int and v >= 0 for v in values)
                ):
                    raise ConfigError(
                        f"{path}: column {checked.name!r} needs {checked.n_bins} counts >= 0 in {key!r}; "
                        "rebuild the profile"
                    )
    return profile


def _column_fields(column: dict[str, Any]) -> dict[str, Any]:
    """A profile column's fields that make a ``Column`` (its scores apart)."""
    return {k: v for k, v in column.items() if k not in SCORE_KEYS}


def columns(profile: Profile, part: str) -> list[Column]:
    return [Column(**_column_fields(c)) for c in profile[part]]


def column_scores(profile: Profile, part: str) -> np.ndarray | None:
    """The scored rows and fixed-point score sums per bin of ``part``'s columns, side by side (2 x bins);
    None if a column has none (a profile built before them)."""
    cols = profile[part]
    if not cols or not all(key in c for c in cols for key in SCORE_KEYS):
        return None
    return np.array([sum((c[key] for c in cols), []) for key in SCORE_KEYS], dtype=np.int64)


def impact_score(score: Any) -> float:
    """A training row's score as the stream's are counted: a number in [0, 1], else none (NaN)."""
    if type(score) in (int, float) and 0 <= score <= 1:
        return float(score)
    return math.nan


def thresholds(profile: Profile, settings: MonitorSettings) -> dict[str, Any]:
    """The calibrated thresholds the monitor applies with this profile and these settings."""
    slot = settings.window_size // settings.subwindows
    out: dict[str, Any] = {
        "false_alarm_run_length": settings.false_alarm_run_length,
        "tests_every_events": slot,
        "concept_cusum_threshold": math.log(settings.false_alarm_run_length * FAMILIES),
    }
    for part in ("features", "outputs", "labels"):
        cols = columns(profile, part)
        if not cols:
            continue
        # multivariate drift takes half of the data family's share (monitor.py, Calibration)
        shares = 2 if part == "features" and settings.multivariate else 1
        p_thr = slot / (settings.false_alarm_run_length * FAMILIES * shares * len(cols))
        # degrees of freedom as when no window bin is new: the reference's non-empty bins - 1
        dfs = np.array([np.count_nonzero(c.ref_counts) - 1 for c in cols])
        out[part] = {"p_value": p_thr, "chi2": {c.name: float(v) for c, v in zip(cols, chi2_critical(p_thr, dfs))}}
    return out


def show(profile: Profile, settings: MonitorSettings) -> str:
    """A readable summary of a profile and its calibrated thresholds."""
    th = thresholds(profile, settings)
    lines = [
        f"profile of {profile['model_id']}: {profile['rows']} rows, {len(profile['features'])} features",
        f"false-alarm budget: one per {th['false_alarm_run_length']:,.0f} events; a test every "
        f"{th['tests_every_events']} events; concept-drift CUSUM threshold {th['concept_cusum_threshold']:.2f}",
    ]
    if profile.get("metrics"):
        lines.append(
            f"reference error rate {profile['metrics']['error_rate']:.4f} "
            f"over {profile['metrics']['labelled']} labelled rows"
        )
    for part in ("features", "outputs", "labels"):
        if part not in th:
            continue
        lines.append(f"\n{part}: drift when a chi-square p-value < {th[part]['p_value']:.3g}")
        lines.append(f"  {'name':<24} {'type':<12} {'bins':>5} {'chi2 >':>9}  bins / categories")
        for c in columns(profile, part):
            shape = (
                f"[{c.edges[0]:.4g} .. {c.edges[-1]:.4g}]"
                if c.kind == NUMERIC
                else ", ".join(c.categories[:6]) + (" …" if len(c.categories) > 6 else "")
            )
            lines.append(f"  {c.name:<24} {c.kind:<12} {c.n_bins:>5} {th[part]['chi2'][c.name]:>9.2f}  {shape}")
    return "\n".join(lines)
