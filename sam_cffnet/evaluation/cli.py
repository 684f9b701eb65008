"""``python -m sam_cffnet evaluate``: judge maps against a reference inventory (wiring only)."""

from __future__ import annotations

from typing import Any

__all__ = ['build_parser', 'main']

EPILOG = """examples:
  python -m sam_cffnet evaluate --input runs/next_area_landslides.tif --reference data/next_area/landslides.geojson \\
      --output-dir runs/evaluation
  python -m sam_cffnet evaluate --input 'maps/*.tif' --reference inventory.gpkg --aoi study_area.gpkg \\
      --output-dir maps/evaluation --iou-threshold 0.3 --size-classes 500 5000 50000

Pixel scores use the training metrics' names (landslide_iou, miou, macro_f1, ...), over the pixels with data on both
sides. A reference landslide is found, and a mapped polygon is a true detection, when its IoU with its counterpart
(the overlapping objects of the other side, less the parts that overlap other objects of its own side) is at least
--iou-threshold; see docs/evaluate.md. Writes <map stem>.evaluation.{md,csv,json,gpkg,png} per scene and
evaluation.{md,csv,json} over all scenes into --output-dir."""


def build_parser() -> Any:
    """The jsonargparse parser of ``evaluate`` (``--config`` files work too)."""
    from jsonargparse import ActionConfigFile

    from ..arguments import command_parser

    p = command_parser(
        'evaluate',
        'Score landslide maps against a reference inventory: pixel scores (streamed), landslides found and missed, '
        'true and false detections, per size class, area error; tables, a GeoPackage of the errors and a quick-look '
        'picture per scene.',
        EPILOG,
    )
    p.add_argument('--config', action=ActionConfigFile, help='a YAML file with any of these options')
    p.add_argument(
        '--input',
        nargs='+',
        required=True,
        help="maps: map's COGs, label rasters (> 0 = landslide) or polygon files, or glob patterns",
    )
    p.add_argument(
        '--reference',
        nargs='+',
        required=True,
        help='the reference inventory: polygons (any CRS) or a label raster; one for all maps, or one '
        'per map in the same order',
    )
    p.add_argument('--output-dir', type=str, required=True, help='folder of the reports')
    p.add_argument('--aoi', type=str | None, default=None, help='polygons of the area of interest (only it is scored)')
    p.add_argument(
        '--scene',
        nargs='+',
        default=None,
        help="imagery under the quick-looks, one per map (default: the scene a map's summary JSON names)",
    )
    p.add_argument('--iou-threshold', type=float, default=0.5, help='object IoU for found / true (default 0.5)')
    p.add_argument(
        '--size-classes',
        type=float,
        nargs='+',
        default=[1000.0, 10000.0, 100000.0],
        help='edges of the size classes in m² (pixels without a CRS); default 1000 10000 100000',
    )
    p.add_argument(
        '--threshold',
        type=float | None,
        default=None,
        help="probability threshold of a map with only a probability band (default: the map's)",
    )
    p.add_argument('--block-size', type=int, default=1024, help='window edge of the pixel pass (default 1024)')
    p.add_argument('--no-quicklook', action='store_true', help='no <stem>.evaluation.png picture')
    p.add_argument('--overwrite', action='store_true', help='replace existing reports')
    return p


def main(argv: list[str] | None = None) -> int:
    """Run ``evaluate``; returns the exit code. Bad input raises (the top-level CLI prints it as one line, exit 2)."""
    from ..arguments import parse_command
    from .report import markdown
    from .run import EvaluateParams, evaluate

    cfg = parse_command(build_parser(), argv)
    params = EvaluateParams(
        inputs=list(cfg.input),
        reference=list(cfg.reference),
        output_dir=cfg.output_dir,
        aoi=cfg.aoi,
        scenes=list(cfg.scene) if cfg.scene else None,
        iou_threshold=cfg.iou_threshold,
        size_classes=[float(v) for v in cfg.size_classes],
        threshold=cfg.threshold,
        block_size=cfg.block_size,
        quicklook=not cfg.no_quicklook,
        overwrite=cfg.overwrite,
    )
    result = evaluate(params)
    rows = [*result['scenes'], result['all']] if len(result['scenes']) > 1 else [result['scenes'][0]]
    print(markdown(rows, 'Evaluation'))
    print(f'reports: {cfg.output_dir}')
    return 0
