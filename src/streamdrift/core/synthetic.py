"""A synthetic production stream with a drift injected at a known point.

Three models share one event stream: ``credit-risk`` (a binary classifier
scoring loan applicants: numeric and categorical features, a score, and
delayed feedback), ``churn`` and ``fraud`` (same shape, other seeds, never
drifting). At ``drift_at`` events of ``credit-risk`` its applicants change:
incomes fall, debt ratios rise and more of them are self-employed, and the
true default rate rises with them. Everything is drawn from a seeded
generator, so the stream is the same on every run.

Examples
--------
>>> events = list(generate(n_events=4, seed=1, start_time=1_700_000_000.0, rate=10.0))
>>> [(kind, e["model_id"], e["event_id"]) for kind, e in events[:3]]
[('prediction', 'credit-risk', 'credit-risk-0'), ('prediction', 'churn', 'churn-0'), ('prediction', 'fraud', 'fraud-0')]
>>> sorted(events[0][1]["features"])
['age', 'credit_lines', 'debt_ratio', 'employment', 'has_mortgage', 'income', 'region']
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
from typing import Any

import numpy as np

MODELS = ("credit-risk", "churn", "fraud")
DRIFTING = "credit-risk"
EMPLOYMENT = ("employed", "self_employed", "unemployed", "retired")
REGIONS = ("north", "south", "east", "west")


def _applicant(rng: np.random.Generator, drifted: bool) -> tuple[dict[str, Any], float]:
    """Features and the true probability of default."""
    income = float(rng.lognormal(10.2 if drifted else 10.6, 0.45))
    debt_ratio = float(rng.beta(4, 4) if drifted else rng.beta(2, 5))
    employment = EMPLOYMENT[rng.choice(4, p=(0.4, 0.4, 0.1, 0.1) if drifted else (0.6, 0.2, 0.1, 0.1))]
    features = {
        "age": int(np.clip(rng.normal(41, 12), 18, 90)),
        "income": round(income, 2),
        "debt_ratio": round(debt_ratio, 4),
        "credit_lines": int(rng.poisson(4)),
        "employment": employment,
        "region": REGIONS[rng.integers(4)],
        "has_mortgage": bool(rng.random() < 0.35),
    }
    z = -1.0 + 3.0 * (debt_ratio - 0.3) - 1.2 * (math.log(income) - 10.6) + 0.6 * (employment == "unemployed")
    if drifted:
        z += 1.6  # the world changed: the same applicant now defaults more often
    return features, 1.0 / (1.0 + math.exp(-z))


def _model_score(features: dict[str, Any]) -> float:
    """What the (stale) deployed model believes: the pre-drift relationship."""
    z = (
        -1.0
        + 3.0 * (features["debt_ratio"] - 0.3)
        - 1.2 * (math.log(features["income"]) - 10.6)
        + 0.6 * (features["employment"] == "unemployed")
    )
    return round(1.0 / (1.0 + math.exp(-z)), 4)


def generate(
    n_events: int,
    seed: int = 7,
    drift_at: int = 6000,
    start_time: float = 1_700_000_000.0,
    rate: float = 1000.0,
    feedback_delay: int = 200,
    feedback_share: float = 0.5,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``("prediction" | "feedback", event)`` pairs, models round-robin.

    ``n_events`` counts predictions over all models; feedback for a share of
    them follows ``feedback_delay`` predictions later, with event time
    ``rate`` events per second from ``start_time``.
    """
    rng = np.random.default_rng(seed)
    pending: deque[tuple[int, dict[str, Any]]] = deque()
    for i in range(n_events):
        model_id = MODELS[i % len(MODELS)]
        n_model = i // len(MODELS)
        features, p_true = _applicant(rng, drifted=model_id == DRIFTING and n_model >= drift_at)
        score = _model_score(features)
        ts = round(start_time + i / rate, 3)
        event_id = f"{model_id}-{n_model}"
        yield (
            "prediction",
            {
                "event_id": event_id,
                "model_id": model_id,
                "model_version": "v1",
                "timestamp": ts,
                "features": features,
                "prediction": int(score >= 0.5),
                "score": score,
            },
        )
        if rng.random() < feedback_share:
            label = int(rng.random() < p_true)
            pending.append(
                (
                    i + feedback_delay,
                    {"event_id": event_id, "model_id": model_id, "model_version": "v1", "label": label},
                )
            )
        while pending and pending[0][0] <= i:
            _, fb = pending.popleft()
            yield "feedback", {**fb, "timestamp": ts}
