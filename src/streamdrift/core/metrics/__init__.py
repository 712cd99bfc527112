"""Online performance metrics of a model, from the pairs the feedback join completes: one module per concern.

- ``labels``: class names of labels (``label_keys``), the task they imply (``infer_task``), registries of names;
- ``windows``: the sub-window bookkeeping and fixed-point sums every windowed metric shares;
- ``classification`` and ``regression``: the metrics of graded predictions, windowed and cumulative;
- ``cbpe``: the label-free accuracy estimate from scores;
- ``cost``: business metrics, the cost and value of graded predictions and the expected cost from scores;
- ``degradation``: is a window surely worse than the reference (Wilson bound)?;
- ``versions``: model versions compared over the same window (Newcombe interval);
- ``segments``: metrics per segment and fairness gaps.

Every class here consumes whole batches of numpy columns, and batches of any
size give the same state (see ``windows``).

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> y = rng.random(2000) < 0.4
>>> p = np.clip(np.where(y, 0.7, 0.3) + rng.normal(0, 0.15, 2000), 0, 1)
>>> m = ClassificationMetrics(window_size=1000, subwindows=5, n_score_bins=20)
>>> windows = m.update(y, p > 0.5, scores=p)
>>> [w["position"] for w in windows]
[1000, 1200, 1400, 1600, 1800, 2000]
>>> r = m.report("window")
>>> r["rows"], r["accuracy"], round(r["f1"], 4), round(r["roc_auc"], 4)
(1000, 0.903, 0.8926, 0.9662)
>>> round(cbpe_accuracy(p), 4)
0.7128
"""

from streamdrift.core.metrics.cbpe import CBPE, cbpe_accuracy
from streamdrift.core.metrics.classification import ClassificationMetrics
from streamdrift.core.metrics.cost import CostMetrics, ExpectedCost
from streamdrift.core.metrics.degradation import DegradationTest, Verdict, wilson_interval
from streamdrift.core.metrics.labels import CLASSIFICATION, REGRESSION, Task, infer_task, label_keys
from streamdrift.core.metrics.regression import RegressionMetrics
from streamdrift.core.metrics.segments import SegmentMetrics
from streamdrift.core.metrics.versions import VersionComparison

__all__ = [
    "CBPE",
    "CLASSIFICATION",
    "REGRESSION",
    "ClassificationMetrics",
    "CostMetrics",
    "DegradationTest",
    "ExpectedCost",
    "RegressionMetrics",
    "SegmentMetrics",
    "Task",
    "Verdict",
    "VersionComparison",
    "cbpe_accuracy",
    "infer_task",
    "label_keys",
    "wilson_interval",
]
