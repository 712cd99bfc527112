"""The settings of the detection core: per model and shared by every model.

Plain pydantic models, no environment or file loading (that is
``streamdrift.runtime.settings``), so the core can be used from Python with
``MonitorSettings(window_size=500)`` and nothing else.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

MAX_ROWS = 2**37  # rows a multivariate reference or window may hold (see core/multivariate.py)


class _Section(BaseModel):
    # defaults validated like given values, so a default and the same value written out (1000000 and
    # 1000000.0 for a float) dump, hash and seal alike
    model_config = ConfigDict(extra="forbid", validate_default=True)


class RetrainBudget(_Section):
    """How often a model may be told to retrain, in event time: ``[monitor.retrain_budget]`` (every model's
    default) or ``[models.<id>.retrain_budget]``. A ``retrain`` event over it keeps its kind and statistics
    but gets ``action: "investigate"`` and a ``budget`` field saying why and when the next is allowed."""

    max_retrains: int = Field(ge=1, le=1000, description="retrain actions allowed per period")
    # finite: a next allowed time past year 9999 is written as its last millisecond (``policy.rfc3339``), an
    # infinite one could not be written at all
    period_s: float = Field(
        gt=0, allow_inf_nan=False, description="the period (event time, seconds) max_retrains counts over"
    )
    min_interval_s: float = Field(
        0.0, ge=0, allow_inf_nan=False, description="event time (seconds) between two retrain actions at least"
    )


# settings added after snapshots were sealed: unset, they dump as before they existed, so the settings' hash
# (the snapshots' seal) is unchanged for a deployment that does not set them, and its snapshots load
_LATER_SETTINGS = ("retrain_budget", "cost_matrix", "cost_per_unit_error", "cost_tolerance")
MAX_ABS_COST = 1e12  # a cost matrix's entries, and cost_per_unit_error: sums and squares of costs stay finite


# ... and those added later with a default that is not None: at their default they dump as before too (a
# snapshot from before multivariate drift loads; its models learn the multivariate reference from the events
# after the restore, as core/monitor.py's from_state says)
_LATER_DEFAULTS = {"multivariate": False, "multivariate_max_features": 20}


def _without_unset_later_settings(data: dict[str, Any]) -> dict[str, Any]:
    for name in _LATER_SETTINGS:
        if name in data and data[name] is None:
            del data[name]
    for name, default in _LATER_DEFAULTS.items():
        if name in data and data[name] == default:
            del data[name]
    return data


class MonitorSettings(_Section):
    """Detection settings shared by every model (the snapshot records their hash)."""

    reference_size: int = Field(2000, ge=50, description="warm-up events that form the reference")
    window_size: int = Field(1000, ge=20, description="events in the sliding window compared to the reference")
    subwindows: int = Field(5, ge=1, le=100, description="sub-windows the window slides by")
    bins: int = Field(10, ge=2, le=100, description="quantile bins per numeric feature")
    max_categories: int = Field(20, ge=1, le=1000, description="categories tracked per feature; the rest are 'other'")
    max_features: int = Field(200, ge=1, le=10_000, description="features monitored per model; more are counted")
    false_alarm_run_length: float = Field(
        1_000_000, ge=1000, description="expected events between false alarms per model, all tests together"
    )
    concept_detector: Literal["cusum", "adwin", "page_hinkley", "kswin", "ddm", "eddm", "hddm_a", "hddm_w"] = "cusum"
    concept_ratio: float = Field(2.0, gt=1, le=100, description="odds-of-error multiple the CUSUM is tuned to")
    concept_warmup: int = Field(1000, ge=30, description="labelled events that set the reference error rate")
    budget_confidence: float = Field(
        0.9,
        gt=0,
        lt=1,
        description="probability that the concept detector keeps the false-alarm budget for this model's own "
        "reference error rate, learnt from its warm-up (its charts are designed for an upper confidence bound)",
    )
    concept_history: int = Field(10_000, ge=100, description="errors a River detector keeps for its snapshot")
    max_missing_rate_increase: float = Field(0.1, gt=0, le=1, description="data quality: missing share over reference")
    max_invalid_rate: float = Field(0.01, gt=0, le=1, description="data quality: share of wrong-typed values")
    max_out_of_range_rate: float = Field(0.05, gt=0, le=1, description="data quality: share outside reference range")
    max_new_category_rate: float = Field(0.05, gt=0, le=1, description="data quality: share of unseen categories")
    cooldown_events: int = Field(
        5000, ge=0, description="events after a drift event before the same kind fires again (not concept drift)"
    )
    join_ttl_s: float = Field(7 * 86400, gt=0, description="event time a prediction waits for its label (and back)")
    join_max_pending: int = Field(20_000, ge=10, description="predictions (and early feedback) waiting, per model")
    join_max_pending_bytes: int = Field(16 << 20, ge=1 << 16, description="approximate bytes waiting, per model")
    score_bins: int = Field(50, ge=5, le=1000, description="score histogram bins for AUC and calibration error")
    degradation_tolerance: float = Field(
        0.05, gt=0, description="how much worse than the reference accuracy (or MAE) a window may be"
    )
    degradation_alpha: float = Field(0.001, gt=0, lt=0.5, description="one-sided confidence of degradation")
    max_versions: int = Field(10, ge=1, le=1000, description="model versions compared per model")
    max_segments: int = Field(20, ge=1, le=1000, description="segment values tracked per attribute")
    retrain_budget: RetrainBudget | None = Field(
        None, description="every model's retrain budget (a model's own replaces it); none: no limit"
    )
    multivariate: bool = Field(
        False,
        description="joint drift (multivariate_drift): each pair of numeric features' correlation against the "
        "reference's; a model's own setting replaces it (off by default: what it costs, docs/benchmarks.md)",
    )
    multivariate_max_features: int = Field(
        20, ge=2, le=100, description="numeric features whose pairs multivariate drift watches (the first by name)"
    )

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return _without_unset_later_settings(handler(self))

    @model_validator(mode="after")
    def _sums_fit(self) -> MonitorSettings:
        # multivariate drift sums products of codes (at most 2**18 each) in int64: exact up to 2**45 rows, 2**37 leaves room
        if self.multivariate and max(self.reference_size, self.window_size) > MAX_ROWS:
            raise ValueError(f"reference_size and window_size must be at most {MAX_ROWS} with multivariate = true")
        return self

    @field_validator("subwindows")
    @classmethod
    def _subwindows_divide(cls, value: int, info: Any) -> int:
        window = info.data.get("window_size")
        if window is not None and window % value:
            raise ValueError(f"must divide window_size ({window})")
        return value

    def fingerprint(self) -> str:
        """A hash of these settings: a snapshot made under others is refused."""
        return hashlib.sha256(orjson.dumps(self.model_dump(), option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


class ModelSettings(_Section):
    """Per-model settings: ``[models.<model_id>]`` in the TOML file."""

    important_features: list[str] = Field(
        default_factory=list, description="data drift on these features means action 'retrain'"
    )
    profile: Path | None = Field(None, description="reference profile from `streamdrift reference build`")
    task: Literal["classification", "regression"] | None = Field(None, description="inferred when unset")
    positive_label: str = Field("1", description="positive class of precision, recall, F1 and `score`")
    segment_attributes: list[str] = Field(default_factory=list, description="`segment` keys to slice metrics by")
    sensitive_attribute: str | None = Field(None, description="segment key whose fairness gaps are reported")
    rebaseline: bool = Field(
        False,
        description="after a data, prediction, label or multivariate drift event, learn a new reference from the "
        "next reference_size events of that stream (a `rebaselined` event records it)",
    )
    retrain_every_s: float | None = Field(
        None, gt=0, description="emit a scheduled_retrain event this often (event time), whatever the detectors say"
    )
    retrain_budget: RetrainBudget | None = Field(
        None, description="this model's retrain budget; none: [monitor]'s retrain_budget, if any"
    )
    cost_matrix: dict[str, dict[str, float]] | None = Field(
        None,
        description="classification: the cost of each (label, prediction) pair, as label -> prediction -> cost, "
        'class names as streamdrift names them ("1" for 1 and true, "0" for 0 and false); every class a row '
        "and a column",
    )
    cost_per_unit_error: float | None = Field(
        None,
        gt=0,
        le=MAX_ABS_COST,
        description="regression: the cost of a prediction is this times |label - prediction|",
    )
    cost_tolerance: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="how much higher than the reference a window's mean cost may be before a performance_degradation "
        "event (detector cost); unset: cost is measured, not tested",
    )
    multivariate: bool | None = Field(
        None, description="joint drift (multivariate_drift) for this model; none: [monitor]'s multivariate"
    )

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return _without_unset_later_settings(handler(self))

    @field_validator("cost_matrix")
    @classmethod
    def _cost_matrix_is_square_and_finite(cls, matrix: dict[str, dict[str, float]] | None) -> Any:
        if matrix is None:
            return None
        classes = sorted(matrix)
        if len(classes) < 2:
            raise ValueError("needs at least two classes: label -> prediction -> cost")
        for label, row in matrix.items():
            if sorted(row) != classes:
                raise ValueError(
                    f"the row of label {label!r} must give a cost for each class {classes}, not {sorted(row)}"
                )
            for prediction, cost in row.items():
                if not (math.isfinite(cost) and abs(cost) <= MAX_ABS_COST):
                    raise ValueError(
                        f"the cost of label {label!r} predicted {prediction!r} must be a finite number of magnitude "
                        f"at most {MAX_ABS_COST:g}"
                    )
        return matrix

    @model_validator(mode="after")
    def _one_cost_for_the_task(self) -> ModelSettings:
        if self.cost_matrix is not None and self.cost_per_unit_error is not None:
            raise ValueError("set cost_matrix (classification) or cost_per_unit_error (regression), not both")
        if self.cost_matrix is not None and self.task == "regression":
            raise ValueError("cost_matrix is for classification; a regression model takes cost_per_unit_error")
        if self.cost_per_unit_error is not None and self.task == "classification":
            raise ValueError("cost_per_unit_error is for regression; a classification model takes cost_matrix")
        if self.cost_tolerance is not None and self.cost_matrix is None and self.cost_per_unit_error is None:
            raise ValueError("cost_tolerance needs cost_matrix or cost_per_unit_error")
        return self


class InputBounds(_Section):
    """What the decoder accepts beyond the JSON types, and what it lets through in clear.

    Each bound keeps one hostile event from damaging a model for good: a number
    of magnitude over ``max_abs_number`` would overflow the metrics' squares, an
    event time far ahead of the record's Kafka timestamp would move the model's
    event-time clock to the future. A breach sends the record to the dead-letter
    topic with a reason that names the field and the rule. The bounds shape state
    (hashed categories): the snapshot's settings record them.
    """

    max_abs_number: float = Field(
        1e15, gt=0, le=1e150, description="numbers (features, prediction, label) of larger magnitude are rejected"
    )
    max_string_chars: int = Field(
        1024,
        ge=1,
        description="strings (feature values, prediction, label, segment names and values, class names) of more "
        "characters are rejected",
    )
    max_event_time_skew_s: float = Field(
        86400, gt=0, description="event times further ahead of the record's Kafka timestamp are rejected"
    )
    redact_values: bool = Field(True, description="dead-letter reasons name the field and the rule, never the value")
    max_category_length: int = Field(
        64, ge=8, description="string feature values longer than this are tracked as a hash of the value"
    )
    hash_categories: bool = Field(False, description="every string feature value is tracked as a hash of the value")
    # a secret: never dumped (the snapshot's settings record the bounds) nor shown; the seal records a key id
    hash_salt: str | None = Field(
        None,
        exclude=True,
        repr=False,
        description="a secret: tracked category hashes are HMAC-SHA256 under it, not a plain SHA-256, so a "
        "low-entropy value (an SSN, a phone number) cannot be found by hashing every candidate",
    )
