"""core/concept.py pinned: every detector's state round trip, the registry's settings, River's detections, the
tests that kill mutants `make mutation` found surviving there. (Tests of the CUSUM's arithmetic against a plain
re-implementation were withdrawn when the CUSUM was redesigned, ed7f012; docs/mutation.md says what that leaves.)
"""

from __future__ import annotations

import functools
import re

import numpy as np
import pytest
from scipy import stats
from scipy.special import rel_entr

from streamdrift.core import concept
from streamdrift.core.errors import SnapshotError
from streamdrift.core.state import dumps


def _errors() -> list[bool]:
    rng = np.random.default_rng(18)
    rates = [0.1] * 400 + [0.5] * 300 + [0.1] * 300 + [0.9] * 300
    return [bool(rng.random() < r) for r in rates]


@pytest.mark.parametrize("name", sorted(concept.DETECTORS))
def test_every_detector_restored_from_its_state_goes_on_as_the_original(name: str) -> None:
    detector = concept.make_detector(name, 1e4, 2.0, 100, history=500)
    errors = _errors()
    first = detector.update(errors[:700])
    restored = concept.make_detector(name, 1e4, 2.0, 100, history=500)
    restored.load_state(detector.state())
    assert dumps(restored.state()) == dumps(detector.state())
    assert restored.update(errors[700:]) == detector.update(errors[700:])
    assert restored.statistic == detector.statistic and restored.threshold == detector.threshold
    assert first or name not in ("cusum", "adwin")  # the change at 400 is found by these two at least


def test_a_cusum_restored_during_its_warm_up_goes_on_as_the_original() -> None:
    errors = _errors()
    cusum = concept.BernoulliCusum(run_length=1e4, ratio=2.0, warmup=200)
    cusum.update(errors[:150])
    restored = concept.BernoulliCusum(run_length=1e4, ratio=2.0, warmup=200)
    restored.load_state(cusum.state())
    assert restored.update(errors[150:]) == cusum.update(errors[150:])


def test_make_detector_builds_each_detector_from_the_monitor_s_settings() -> None:
    cusum = concept.make_detector("cusum", 1e4, 3.0, 150, history=64)
    assert (cusum.name, cusum.run_length, cusum.ratio, cusum.warmup) == ("cusum", 1e4, 3.0, 150)
    river = concept.make_detector("page_hinkley", 1e4, 3.0, 150, history=64)
    assert (river.name, river.history) == ("page_hinkley", 64)


def test_a_river_detection_carries_the_documented_fields_and_the_stream_goes_on_after_it() -> None:
    errors = _errors()
    found = concept.make_detector("adwin", 1e4, 2.0, 100, history=5000).update(errors)
    assert len(found) >= 2  # without stop_at_detection, every detection of the stream
    first = found[0]
    i = first["index"]
    assert first == {
        "index": i,
        "statistic": 1.0,
        "threshold": 0.5,
        "reference_error_rate": None,
        "error_rate_since_reference": float(np.mean(errors[: i + 1])),
        "labelled_since_reference": i + 1,
    }


def test_a_river_detector_keeps_the_recent_half_of_its_history_when_full() -> None:
    detector = concept.RiverDetector("page_hinkley", history=12)
    detector.update([0] * 11)
    assert detector.state()["n"] == 11
    detector.update([0])
    assert detector.state()["n"] == 6


def test_kswin_is_seeded_the_same_runs_give_the_same_detections() -> None:
    errors = _errors() * 2
    runs = [concept.make_detector("kswin", 1e4, 2.0, 100, history=5000).update(errors) for _ in range(2)]
    assert runs[0] == runs[1] and runs[0]


# -- BernoulliCusum against a plain model of it, one event at a time -------------------------------------------


def _plain_cusum(
    errors: list[bool], run_length: float, ratio: float, warmup: int, confidence: float | None, slow: float | None
) -> tuple[list[dict], dict, float]:
    """The CUSUM as the module's docstring states it, one event at a time with ``max(0, s + step)``: a warm-up of
    ``warmup`` events, looks at 2, 4, 8, 16 x warmup (skipped while a chart is over half its threshold, or, with a confidence, while
    the errors since the reference are above the design rate at the one-sided binomial level 0.02), the
    design rate the upper bound at ``1 - (1 - confidence) x share``, the shares 0.4, 0.1, 0.025, 0.1, 0.375 for
    the looks at 1, 2, 4, 8, 16 x warmup,
    each chart's steps on its lattice (``chart_steps``) and its limit for ``run_length / 0.4`` (fast) or
    ``run_length / 0.6`` (slow; a fast chart alone: ``run_length``) from ``chart_limit``, a lattice unit ``k`` units
    of 2**-20, the fast chart first on a tie, a restart after each detection. Returns the detections, the final
    state and the statistic."""
    ratios = [ratio] if slow is None else [ratio, slow]
    shares = [1.0] if slow is None else [0.4, 0.6]
    scale = 2**20

    def limits_of(p: float) -> list[int]:
        return [concept.chart_limit(p, *concept.chart_steps(p, r)[:2], run_length / f) for r, f in zip(ratios, shares)]

    @functools.cache
    def design_of(p: float) -> list[tuple[float, int, int, int]]:
        charts = []
        for r, limit in zip(ratios, limits_of(p)):
            up, down, unit = concept.chart_steps(p, r)
            k = max(1, round(unit * scale))
            charts.append((limit * unit, up * k, -down * k, limit * k))
        return charts

    def fresh() -> dict:
        n = len(ratios)
        return {"seen": 0, "errors": 0, "reference": None, "design": None, "limits": None, "next_look": None,
                "s": [0] * n, "runs": [0] * n, "watched": 0, "watched_errors": 0}  # fmt: skip

    def look(st: dict) -> None:
        multiple = st["seen"] // warmup  # of the warm-up: 1, 2, 4, 8 or 16
        st["reference"] = [st["seen"], st["errors"]]
        st["next_look"] = st["seen"] * 2 if st["seen"] * 2 <= warmup * 16 else None
        n, k = st["seen"], st["errors"]
        if confidence is None:
            st["design"] = min(max(k / n, 1 / n), 1 - 1 / n)
        else:
            # the first four looks their Bonferroni share of 1 - confidence, the last what their overlap leaves
            shares = {1: 0.4, 2: 0.1, 4: 0.025, 8: 0.1}
            miss = concept.look_misses(confidence)[4] if multiple == 16 else (1 - confidence) * shares[multiple]
            st["design"] = concept.upper_bound(k, n, 1 - miss)
        st["limits"] = limits_of(st["design"])

    st, found = fresh(), []
    for i, wrong in enumerate(errors):
        if st["reference"] is None:
            st["seen"] += 1
            st["errors"] += int(wrong)
            if st["seen"] == warmup:
                look(st)
            continue
        if st["next_look"] is not None and st["seen"] >= st["next_look"]:
            climbing = any(2 * s > chart[3] for s, chart in zip(st["s"], design_of(st["design"])))
            since = st["seen"] - st["reference"][0], st["errors"] - st["reference"][1]
            # more errors since the reference than the design rate gives with probability 0.02 (a bound only)
            risen = confidence is not None and stats.binom.sf(since[1] - 1, since[0], st["design"]) < 0.02
            if not climbing and not risen:
                look(st)
            else:
                st["next_look"] = st["seen"] * 2 if st["seen"] * 2 <= warmup * 16 else None
        charts = design_of(st["design"])
        for c, (_, up, down, _) in enumerate(charts):
            st["s"][c] = max(0, st["s"][c] + (up if wrong else down))
            st["runs"][c] = 0 if st["s"][c] == 0 else st["runs"][c] + 1
        st["seen"] += 1
        st["errors"] += int(wrong)
        st["watched"] += 1
        st["watched_errors"] += int(wrong)
        over = [c for c, chart in enumerate(charts) if st["s"][c] > chart[3]]
        if over:
            c = over[0]
            n, k = st["reference"]
            found.append(
                {
                    "index": i,
                    "chart": c,
                    "statistic": st["s"][c] / scale * (charts[0][0] / charts[c][0]),
                    "threshold": charts[0][0],
                    "reference_error_rate": min(max(k / n, 1 / n), 1 - 1 / n),
                    "design_error_rate": st["design"],
                    "error_rate_since_reference": st["watched_errors"] / st["watched"],
                    "labelled_since_reference": st["watched"],
                    "since_change": st["runs"][c],
                }
            )
            st = fresh()
    statistic = 0.0
    if st["reference"] is not None:
        charts = design_of(st["design"])
        statistic = max(s / chart[3] for s, chart in zip(st["s"], charts)) * charts[0][0]
    return found, {"version": 3, **st}, statistic


def _regimes(seed: int) -> list[bool]:
    """Error rates that rise, fall back and rise again, slowly and abruptly, so that both charts fire, looks are
    taken and skipped, and the detector restarts several times."""
    rng = np.random.default_rng(seed)
    rates = [0.1] * 700 + [0.14] * 1500 + [0.1] * 600 + [0.6] * 200 + [0.05] * 900 + [0.3] * 400 + [0.02] * 300
    return [bool(rng.random() < r) for r in rates]


def test_a_look_that_keeps_its_design_as_the_plain_definition_does() -> None:
    """A change that starts while the reference is learnt again after a false alarm (the errors of
    test_concept's ``_false_then_real(53)``): the look at 2 x warmup keeps the design, as the plain model says."""
    rates = np.full(12_000, 0.1)
    rates[3000:3060] = 0.6
    rates[3815:] = 0.2
    errors = (np.random.default_rng(53).random(len(rates)) < rates).tolist()
    expected, state, _ = _plain_cusum(errors, 4e6, 2.0, 1000, 0.9, concept.SLOW_RATIO)
    cusum = concept.BernoulliCusum(4e6, 2.0, 1000, 0.9)
    assert cusum.update(errors) == expected and [d["index"] for d in expected] == [3035, 5305]
    assert cusum.state() == state


@pytest.mark.parametrize(
    "seed, warmup, confidence, slow", [(0, 40, 0.9, 1.2), (1, 40, None, 1.2), (4, 60, 0.9, 1.2), (3, 45, 0.8, None)]
)
def test_the_cusum_gives_the_detections_state_and_statistic_of_its_plain_definition(seed, warmup, confidence, slow):
    errors = _regimes(seed)
    expected, state, statistic = _plain_cusum(errors, 2000, 2.0, warmup, confidence, slow)
    cusum = concept.BernoulliCusum(2000, 2.0, warmup, confidence, slow)
    assert (
        cusum.update(errors[:10]) == []
        and cusum.state() == _plain_cusum(errors[:10], 2000, 2.0, warmup, confidence, slow)[1]
    )
    assert [{**d, "index": d["index"] + 10} for d in cusum.update(errors[10:])] == expected
    assert cusum.state() == state
    assert cusum.statistic == statistic
    assert len(expected) >= 3 and {d["chart"] for d in expected} == ({0, 1} if slow else {0})


@pytest.mark.parametrize("name", ["cusum", "adwin"])
def test_stop_at_detection_returns_the_first_detection_and_leaves_the_rest_unread(name: str) -> None:
    """As the monitor drives a detector: it acts on the first detection, then feeds the errors after it again."""
    errors = _regimes(1)
    everything = concept.make_detector(name, 2000, 2.0, 40).update(errors)
    stepwise, found, done = concept.make_detector(name, 2000, 2.0, 40), [], 0
    while done < len(errors):
        first = stepwise.update(errors[done:], stop_at_detection=True)
        assert len(first) <= 1
        if not first:
            break
        found.append({**first[0], "index": done + first[0]["index"]})
        done += first[0]["index"] + 1
    assert len(everything) >= 3 and found == everything


@pytest.mark.parametrize(
    "errors, events, confidence", [(0, 50, 0.9), (7, 100, 0.95), (1, 2, 0.99), (130, 1000, 0.9875)]
)
def test_upper_bound_is_the_one_sided_clopper_pearson_bound(errors: int, events: int, confidence: float) -> None:
    """The rate at which seeing ``errors`` or fewer has probability 1 - confidence (scipy's beta quantile)."""
    bound = concept.upper_bound(errors, events, confidence)
    assert bound == pytest.approx(stats.beta.ppf(confidence, errors + 1, events - errors), rel=1e-12)
    assert stats.binom.cdf(errors, events, bound) == pytest.approx(1 - confidence, rel=1e-9)


def test_upper_bound_of_a_warm_up_that_was_all_errors_stays_below_one() -> None:
    """The exact bound would be 1, for which no chart can be designed: half an event's share below it instead."""
    assert concept.upper_bound(10, 10, 0.9) == 0.95
    assert concept.upper_bound(4, 4, 0.99) == 0.875


@pytest.mark.parametrize(
    "p0, p1, run_length", [(0.1, 0.18, 1e6), (0.3, 0.4, 5e3), (0.02, 0.05, 20.0), (0.1, 0.12, 100.0)]
)
def test_siegmund_threshold_solves_its_equation(p0: float, p1: float, run_length: float) -> None:
    """``(e^h - h - 1) / KL(p0 || p1) = run_length``, with KL from scipy (small run lengths included: h below 1)."""
    kl = float(rel_entr([p0, 1 - p0], [p1, 1 - p1]).sum())
    h = concept.siegmund_threshold(p0, p1, run_length)
    assert (np.expm1(h) - h) / kl == pytest.approx(run_length, rel=1e-9)


def test_make_detector_designs_the_cusum_for_the_budget_confidence_it_is_given() -> None:
    errors = np.zeros(200, dtype=bool)
    errors[::10] = True
    for confidence in (0.8, 0.99):
        cusum = concept.make_detector("cusum", 1e4, 2.0, 200, confidence=confidence)
        cusum.update(errors)
        assert cusum.design == concept.upper_bound(20, 200, 1 - (1 - confidence) * 0.4)


def test_a_cusum_snapshot_of_another_version_or_chart_count_is_refused_saying_how_to_recover() -> None:
    message = (
        "the concept detector's state is from before its charts were designed for a confidence bound of the error "
        "rate (issue 22): delete the snapshot to start this model afresh (its concept detector learns its reference "
        "error rate again from the next labelled events)"
    )
    state = concept.BernoulliCusum(1e4, 2.0, 100).state()
    for bad in ({**state, "version": 1}, {**state, "version": 4}, {**state, "s": [0], "runs": [0]}):
        with pytest.raises(SnapshotError, match=f"^{re.escape(message)}$"):
            concept.BernoulliCusum(1e4, 2.0, 100).load_state(bad)
    one_chart = concept.BernoulliCusum(1e4, 2.0, 100, slow_ratio=None)
    one_chart.load_state({**state, "s": [0], "runs": [0]})  # a fast chart alone takes a one-chart state
    with pytest.raises(SnapshotError):
        one_chart.load_state(state)


def test_a_version_2_cusum_state_loads_its_limits_computed_for_its_design_and_goes_on() -> None:
    """Version 2 (before the limits were exact) kept no limits: they are computed for its design error rate, the
    charts go on from its statistics, and the state it gives is version 3, as if it had been taken so."""
    errors = _regimes(0)
    cusum = concept.BernoulliCusum(2000, 2.0, 40)
    cusum.update(errors[:1000])
    state = cusum.state()
    assert state["version"] == 3 and state["limits"] and all(state["s"])
    old = {key: value for key, value in state.items() if key != "limits"} | {"version": 2}
    restored = concept.BernoulliCusum(2000, 2.0, 40)
    restored.load_state(old)
    assert restored.state() == state
    assert restored.update(errors[1000:]) == cusum.update(errors[1000:])


def test_a_cusum_restored_during_its_warm_up_has_the_same_state() -> None:
    cusum = concept.BernoulliCusum(1e4, 2.0, 100)
    cusum.update(_regimes(0)[:30])
    restored = concept.BernoulliCusum(1e4, 2.0, 100)
    restored.load_state(cusum.state())
    assert restored.state() == cusum.state() and cusum.state()["design"] is None
