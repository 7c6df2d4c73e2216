"""The projections a store has unless it is given others (``Store(projections=…)``)."""

from __future__ import annotations

from .annotation import AnnotationsProjection
from .catalog import CatalogProjection
from .cost import CostsProjection
from .fulltext import SearchProjection
from .metrics_projection import MetricsProjection
from .part_index import PartIndexProjection
from .projection import Projection
from .score import ScoresProjection


def default_projections() -> tuple[Projection, ...]:
    """The projections of a store opened without ``projections=``: the run catalog (``runs``,
    ``parts``), metrics (``run_metrics``, ``part_metrics``), the part index (``test_results``),
    scores (``scores``), annotations (``run_tags``, ``notes``), and the lazy ones: costs
    (``usage_costs``, ``cost_runs``) and the full-text index (``search_text``)."""
    return (CatalogProjection(), MetricsProjection(), PartIndexProjection(), ScoresProjection(),
            AnnotationsProjection(), CostsProjection(), SearchProjection())
