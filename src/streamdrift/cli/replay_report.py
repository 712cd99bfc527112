"""What ``streamdrift replay`` shows once the replay is over: the summary table per model and the plot.

`Replay` (``cli/replay.py``) collects a `ModelReport` per model, and with
``--plot`` a `Trace`; `render` makes the table, `plot` the figure.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from streamdrift.core.errors import StreamdriftError
from streamdrift.core.policy import rfc3339

if TYPE_CHECKING:  # only a type here: replay.py imports this module to print its report
    from streamdrift.cli.replay import Replay

PLOT_MAX_MODELS = 8
PLOT_NAMED_FEATURES = 6


@dataclass
class ModelReport:
    """What the summary shows of one model."""

    predictions: int = 0
    feedback: int = 0
    bad_lines: int = 0
    unmonitored: int = 0  # events not monitored: the model was over max_models
    drift_events: dict[str, int] = field(default_factory=dict)
    first_drift: float | None = None  # event time of the first drift event
    first_time: float = float("inf")
    last_time: float = float("-inf")


@dataclass
class Trace:
    """What ``--plot`` draws for one model, collected while the replay runs."""

    # family -> [(window end time, column names, PSI per column, strength = -log10 p / -log10 threshold)]
    windows: dict[str, list[tuple]] = field(default_factory=dict)
    error_times: list[float] = field(default_factory=list)  # event time of the row that graded each prediction
    errors: list[bool] = field(default_factory=list)
    concept_times: list[float] = field(default_factory=list)
    concept: list[float] = field(default_factory=list)  # CUSUM statistic / threshold, after each graded batch
    drift: list[tuple[float, str]] = field(default_factory=list)  # (event time, kind)


# -- the summary ---------------------------------------------------------------

COLUMNS = ("MODEL", "PREDICTIONS", "FEEDBACK", "BAD LINES", "DRIFT EVENTS", "FIRST DRIFT", "FIRST EVENT", "LAST EVENT")
NUMERIC = frozenset({"PREDICTIONS", "FEEDBACK", "BAD LINES"})  # right-aligned


def render(replay: Replay) -> str:
    """The per-model summary table, then a totals line.

    >>> from streamdrift.cli.replay import Replay
    >>> from streamdrift.runtime.settings import load_settings
    >>> r = Replay(load_settings())
    >>> r.models["m1"] = ModelReport(120, 60, 2, 0, {"data_drift": 1}, 1_700_000_100.0, 1_700_000_000.0,
    ...                              1_700_000_119.5)
    >>> r.bad_lines = {"m1": 2, None: 1}
    >>> print(render(r))
    MODEL  PREDICTIONS  FEEDBACK  BAD LINES  DRIFT EVENTS  FIRST DRIFT               FIRST EVENT               LAST EVENT
    m1             120        60          2  data_drift=1  2023-11-14T22:15:00.000Z  2023-11-14T22:13:20.000Z  2023-11-14T22:15:19.500Z
    1 model, 1 drift event, 3 bad lines (1 without a readable model_id)
    """
    rows = [COLUMNS]
    for model_id, r in sorted(replay.models.items()):
        kinds = " ".join(f"{k}={n}" for k, n in sorted(r.drift_events.items())) or "-"
        seen = r.first_time <= r.last_time
        rows.append(
            (
                model_id,
                str(r.predictions),
                str(r.feedback),
                str(r.bad_lines),
                kinds,
                rfc3339(r.first_drift) if r.first_drift is not None else "-",
                rfc3339(r.first_time) if seen else "-",
                rfc3339(r.last_time) if seen else "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(
            cell.rjust(w) if name in NUMERIC else cell.ljust(w) for cell, w, name in zip(row, widths, COLUMNS)
        ).rstrip()
        for row in rows
    ]
    n_events = sum(sum(r.drift_events.values()) for r in replay.models.values())
    n_bad = sum(replay.bad_lines.values())
    total = f"{_plural(len(replay.models), 'model')}, {_plural(n_events, 'drift event')}, {_plural(n_bad, 'bad line')}"
    if replay.bad_lines.get(None):
        total += f" ({replay.bad_lines[None]} without a readable model_id)"
    unmonitored = sum(r.unmonitored for r in replay.models.values())
    if unmonitored:
        total += f"; {unmonitored} events not monitored (over max_models={replay.settings.max_models})"
    return "\n".join(lines + [total])


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


# -- the plot ------------------------------------------------------------------

KIND_COLOURS = {
    "data_drift": "tab:red",
    "prediction_drift": "tab:orange",
    "label_drift": "tab:purple",
    "concept_drift": "tab:blue",
    "performance_degradation": "tab:brown",
    "data_quality": "tab:gray",
}
# dash patterns that stay apart when two kinds fire on the same event
KIND_DASHES = {
    "data_drift": (0, (6, 6)),
    "prediction_drift": (6, (6, 6)),
    "label_drift": (3, (3, 9)),
    "concept_drift": (0, (2, 2)),
    "performance_degradation": (0, (8, 2)),
    "data_quality": (0, (1, 3)),
}
FAMILY_COLOURS = {"data": "tab:red", "prediction": "tab:orange", "label": "tab:purple", "concept": "tab:blue"}


def load_pyplot():
    """matplotlib's pyplot, drawing to files (Agg), or an error that says what to install."""
    try:
        import matplotlib
    except ImportError:
        raise StreamdriftError("--plot needs matplotlib: pip install 'streamdrift[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot(replay: Replay, path: Path) -> None:
    """Per model (the most drifting first, at most 8): feature PSI, test strength, error rate."""
    plt = load_pyplot()
    from datetime import datetime

    import matplotlib.dates as mdates

    def dates(times: Iterable[float]) -> list[datetime]:
        return [datetime.fromtimestamp(t, tz=UTC) for t in times]

    order = sorted(replay.traces, key=lambda m: (-sum(replay.models[m].drift_events.values()), m))
    shown = order[:PLOT_MAX_MODELS]
    fig, axes = plt.subplots(
        max(len(shown), 1), 3, figsize=(19, 3.6 * max(len(shown), 1)), squeeze=False, sharex="row", layout="constrained"
    )
    for row, model_id in zip(axes, shown):
        trace = replay.traces[model_id]
        _plot_psi(row[0], trace, dates)
        _plot_strength(row[1], trace, dates)
        _plot_errors(row[2], trace, dates, replay.settings.monitor.window_size)
        row[0].set_ylabel(model_id, fontsize=12, fontweight="bold")
        for ax in row:
            for at, kind in trace.drift:
                ax.axvline(dates([at])[0], color=KIND_COLOURS[kind], linestyle=KIND_DASHES[kind], linewidth=1.4)
            ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax.xaxis.get_major_locator()))
            ax.grid(alpha=0.3)
    kinds = sorted({kind for m in shown for _, kind in replay.traces[m].drift}, key=list(KIND_COLOURS).index)
    if kinds:
        handles = [plt.Line2D([], [], color=KIND_COLOURS[k], linestyle=KIND_DASHES[k], label=k) for k in kinds]
        fig.legend(handles=handles, loc="outside lower center", ncols=len(kinds), title="drift events")
    title = "streamdrift replay, over event time (UTC)"
    if len(order) > len(shown):
        title += f": {len(shown)} of {len(order)} models, the most drifting first"
    fig.suptitle(title)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _plot_psi(ax, trace: Trace, dates) -> None:
    windows = trace.windows.get("data", [])
    ax.set_title("data drift: PSI per feature, each scored window", fontsize=10)
    if not windows:
        ax.text(0.5, 0.5, "no window scored (still warming up)", ha="center", transform=ax.transAxes)
        return
    names = windows[-1][1]
    psi = np.array([w[2] for w in windows if w[1] == names])
    t = dates(w[0] for w in windows if w[1] == names)
    ranked = np.argsort(-psi.max(axis=0), kind="stable")
    for i in ranked[PLOT_NAMED_FEATURES:]:
        ax.plot(t, psi[:, i], color="0.75", linewidth=0.8)
    for i in ranked[:PLOT_NAMED_FEATURES]:
        ax.plot(t, psi[:, i], linewidth=1.4, label=names[i])
    ax.legend(
        fontsize=8,
        loc="upper left",
        title="most drifted" if len(names) > PLOT_NAMED_FEATURES else None,
        title_fontsize=8,
    )
    ax.set_ylim(bottom=0)


def _plot_strength(ax, trace: Trace, dates) -> None:
    ax.set_title("calibrated tests: strength / threshold (fires above 1)", fontsize=10)
    for family in ("data", "prediction", "label"):
        windows = trace.windows.get(family, [])
        if windows:
            ax.plot(
                dates(w[0] for w in windows),
                [w[3] for w in windows],
                color=FAMILY_COLOURS[family],
                linewidth=1.2,
                label=f"{family}: -log10 p / -log10 p*",
            )
    if trace.concept:
        ax.plot(
            dates(trace.concept_times),
            trace.concept,
            color=FAMILY_COLOURS["concept"],
            linewidth=0.6,
            alpha=0.7,
            label="concept: CUSUM / ln(run length)",
        )
    ax.axhline(1.0, color="black", linewidth=1)
    ax.set_yscale("symlog", linthresh=1.0)  # linear up to the threshold, compressed above it
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_formatter("{x:g}")
    if ax.lines[:-1]:
        ax.legend(fontsize=8, loc="upper left")


def _plot_errors(ax, trace: Trace, dates, window: int) -> None:
    ax.set_title(f"error rate of graded predictions (last {window})", fontsize=10)
    if not trace.errors:
        ax.text(0.5, 0.5, "no graded predictions", ha="center", transform=ax.transAxes)
        return
    errors = np.asarray(trace.errors, dtype=np.float64)
    sums = np.cumsum(errors)
    n = np.arange(1, len(errors) + 1)
    rolling = (sums - np.concatenate([np.zeros(window), sums[:-window]])[: len(errors)]) / np.minimum(n, window)
    ax.plot(dates(trace.error_times), rolling, color="black", linewidth=1.2)
    ax.set_ylim(0, max(0.05, float(rolling.max()) * 1.15))
