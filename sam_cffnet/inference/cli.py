"""``python -m sam_cffnet map``: region-scale landslide mapping from the command line (wiring only).

The options of ``map`` plus Lightning's own Trainer options (``--trainer.accelerator``, ``--trainer.devices``,
``--trainer.num_nodes``, ``--trainer.strategy``, ``--trainer.precision``, ...), parsed by jsonargparse like
``fit``'s, so ``srun python -m sam_cffnet map ... --trainer.devices 4 --trainer.num_nodes 2`` maps on 8 GPUs.
Everything the user can get wrong is checked before the model is loaded.
"""

from __future__ import annotations

from typing import Any

__all__ = ['TRAINER_OPTIONS', 'build_parser', 'main']

EPILOG = """examples:
  python -m sam_cffnet map --checkpoint runs/bijie/last.ckpt --input scene.tif --output scene_map.tif \\
      --polygons scene_map.gpkg --min-area 500 --trainer.precision bf16-mixed
  python -m sam_cffnet map --checkpoint best.ckpt --input 'tiles/*.tif' other/region.vrt --output-dir maps/ \\
      --polygons gpkg --mosaic maps/all.vrt --trainer.accelerator gpu --trainer.devices 4
  srun python -m sam_cffnet map --checkpoint best.ckpt --input 'scenes/*.tif' --output-dir maps/ \\
      --trainer.devices 4 --trainer.num_nodes 2 --trainer.precision bf16-mixed      # SLURM, 2 nodes x 4 GPUs
  python -m sam_cffnet map --reference-checkpoint checkpoints/GVLM_best.pth.tar --input site.png --output site.tif

Each output GeoTIFF (COG, uint8, nodata 255) has its scene's CRS, transform and size: band 1 = probability x 254,
band 2 = mask (1 landslide). Bands and normalization come from the checkpoint. Rerun the same command after an
interruption: only the missing blocks are computed (state in a hidden .<output>.map-state folder)."""

#: The Trainer options ``map`` accepts (the others concern training, logging or checkpoints).
TRAINER_OPTIONS = ('accelerator', 'strategy', 'devices', 'num_nodes', 'precision', 'plugins', 'profiler',
                   'deterministic', 'benchmark')  # fmt: skip


def build_parser() -> Any:
    """The jsonargparse parser of ``map`` (``--config`` files work too)."""
    import inspect

    from jsonargparse import ActionConfigFile
    from lightning.pytorch import Trainer

    from ..arguments import command_parser

    p = command_parser(
        'map',
        'Map landslides over whole scenes (GeoTIFF, VRT, PNG/JPEG) with sliding windows on one or many devices and '
        'nodes; write one georeferenced Cloud-Optimized GeoTIFF per scene, optional polygons, a summary per scene and '
        'an optional mosaic. Resumable.',
        EPILOG,
    )
    p.add_argument('--config', action=ActionConfigFile, help='a YAML file with any of these options')
    p.add_argument(
        '--checkpoint',
        type=str | None,
        default=None,
        help='a sam_cffnet training checkpoint (.ckpt) or an exported one',
    )
    p.add_argument(
        '--reference-checkpoint',
        type=str | None,
        default=None,
        help="instead, the authors' released {BJL,L4S,GVLM}_best.pth.tar",
    )
    p.add_argument(
        '--sam-checkpoint',
        type=str | None,
        default=None,
        help='SAM weights (sam_vit_l_0b3195.pth) when they moved since training (with --checkpoint)',
    )
    p.add_argument(
        '--input', nargs='+', required=True, help='scenes: GeoTIFF/VRT/PNG/JPEG files or glob patterns (quote them)'
    )
    p.add_argument('--output', type=str | None, default=None, help='the output GeoTIFF (one scene)')
    p.add_argument('--output-dir', type=str | None, default=None, help='instead, a folder: <scene stem>.tif per scene')
    p.add_argument(
        '--polygons',
        type=str | None,
        default=None,
        help='also write polygons: a .gpkg/.geojson path (one scene), or gpkg / geojson: one file per scene',
    )
    p.add_argument('--min-area', type=float, default=0.0, help='minimum polygon area (CRS units^2, or pixels)')
    p.add_argument(
        '--mosaic',
        type=str | None,
        default=None,
        help='also write a mosaic of all outputs: .vrt, or .tif (COG); the scenes must share a CRS',
    )
    p.add_argument('--tile-size', type=int | None, default=None, help='window edge (default: training tile size)')
    p.add_argument('--overlap', type=int | None, default=None, help='overlap between windows (default: tile / 4)')
    p.add_argument('--batch-size', type=int, default=8, help='windows per forward pass (default 8)')
    p.add_argument(
        '--block-size',
        type=int,
        default=3072,
        help='edge of the blocks processes take, in pixels (default 3072; ~9 bytes/pixel in memory)',
    )
    p.add_argument(
        '--threshold', type=float | None, default=None, help="mask rule p > threshold (default: the checkpoint's rule)"
    )
    p.add_argument('--no-probability', action='store_true', help='write only the mask band')
    p.add_argument('--no-mask', action='store_true', help='write only the probability band')
    p.add_argument('--attention', choices=['sdpa', 'reference', 'checkpoint'], default='sdpa',
                   help="SAM encoder attention: sdpa (default; same result, less memory), reference, or the "
                        "checkpoint's")  # fmt: skip
    p.add_argument('--compile', action='store_true', help='run the model through torch.compile')
    p.add_argument('--num-workers', type=int, default=2, help='raster reader processes per device (default 2)')
    p.add_argument('--gdal-cache-mb', type=int, default=256, help='GDAL block cache per process (MB, default 256)')
    p.add_argument('--overwrite', action='store_true', help="replace existing outputs and another run's state")
    p.add_argument('--quiet', action='store_true', help='no progress bar')
    p.add_argument('--no-quicklook', action='store_true', help='no <output stem>.quicklook.png picture per scene')
    skip = set(inspect.signature(Trainer.__init__).parameters) - {'self', *TRAINER_OPTIONS}
    p.add_class_arguments(Trainer, 'trainer', fail_untyped=False, instantiate=False, sub_configs=True, skip=skip)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run ``map``; returns the exit code. Bad input raises (the top-level CLI prints it as one line, exit 2).

    SIGTERM and SIGINT (Ctrl-C) stop the run after the block under way: one line saying to rerun the same command to
    resume, exit 143 (SIGTERM) or 130 (SIGINT).
    """
    import sys

    from .signals import MappingStopped, StopSignals

    with StopSignals():
        try:
            return _run(argv)
        except MappingStopped as err:
            print(f'sam_cffnet map: {err}', file=sys.stderr, flush=True)
            return err.exit_code


def _run(argv: list[str] | None) -> int:
    from ..arguments import parse_command
    from .model import check_model_files, load_mapping_model
    from .params import MapParams, file_identity
    from .runner import MappingRun

    parser = build_parser()
    cfg = parse_command(parser, argv)
    check_model_files(cfg.checkpoint, cfg.reference_checkpoint, cfg.sam_checkpoint, prefix='--')
    params = MapParams(
        inputs=list(cfg.input), output=cfg.output, output_dir=cfg.output_dir, polygons=cfg.polygons,
        min_area=cfg.min_area, mosaic=cfg.mosaic, tile_size=cfg.tile_size, overlap=cfg.overlap,
        batch_size=cfg.batch_size, block_size=cfg.block_size, threshold=cfg.threshold,
        write_probability=not cfg.no_probability, write_mask=not cfg.no_mask,
        attention=None if cfg.attention == 'checkpoint' else cfg.attention, compile=cfg.compile,
        num_workers=cfg.num_workers, gdal_cache_mb=cfg.gdal_cache_mb, overwrite=cfg.overwrite, progress=not cfg.quiet,
        quicklook=not cfg.no_quicklook,
    )  # fmt: skip
    identity = {
        name: file_identity(value) if value is not None else None
        for name, value in (('checkpoint', cfg.checkpoint), ('reference_checkpoint', cfg.reference_checkpoint),
                            ('sam_checkpoint', cfg.sam_checkpoint))
    }  # fmt: skip
    trainer = dict(parser.instantiate(cfg).trainer)
    run = MappingRun(params, identity, trainer)  # inputs, outputs, another run, its lock: refused before loading
    if run.complete is not None:  # a previous run of this command completed: nothing to load
        run.execute(None)  # type: ignore[arg-type]
        return 0
    try:
        loaded = load_mapping_model(cfg.checkpoint, cfg.reference_checkpoint, cfg.sam_checkpoint)
    except BaseException:
        run.release()
        raise
    run.execute(loaded.model, loaded.preprocessing, loaded.rule)
    return 0
