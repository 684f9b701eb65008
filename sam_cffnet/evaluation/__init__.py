"""Judge a map without a GIS: ``python -m sam_cffnet evaluate`` (:mod:`.cli`) or :func:`evaluate`.

One concept per module:

* :mod:`.inputs`: maps and inventories (rasters or polygons, any CRS), their checks and alignment;
* :mod:`.pixels`: the streamed confusion matrix and the training metrics;
* :mod:`.objects`: the matching rule, found / missed / false, object recall, precision, F1 per size class;
* :mod:`.report`: Markdown / CSV / JSON tables and the GeoPackage of errors;
* :mod:`.run`: the run (:class:`EvaluateParams`, :func:`evaluate`).

The quick-look pictures are drawn by :mod:`sam_cffnet.inference.quicklook` (shared with ``map``).
"""

from .objects import ObjectMatch, match_objects, object_scores
from .run import EvaluateParams, evaluate

__all__ = ['EvaluateParams', 'ObjectMatch', 'evaluate', 'match_objects', 'object_scores']
