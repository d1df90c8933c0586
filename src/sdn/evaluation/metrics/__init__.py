"""Metrics, in a registry (sdn.evaluation.metrics.registry): each a small module that registers `name -> Metric`.
Importing this package registers them all, in the order reports list them; consumers iterate METRICS."""

from sdn.evaluation.metrics import similarity, inception_score, fid, colour, shape, position, variety  # noqa: F401,I001  (they register themselves, in this order)
from sdn.evaluation.metrics.colour import colour_accuracy  # noqa: F401  (used by sdn.demo)
from sdn.evaluation.metrics.position import object_centres, position_accuracy  # noqa: F401  (used by sdn.demo)
from sdn.evaluation.metrics.shape import shape_accuracy  # noqa: F401  (used by sdn.demo)
from sdn.evaluation.metrics.registry import METRICS, EvalContext, Metric, default_metrics, register  # noqa: F401
