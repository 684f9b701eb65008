"""``python -m sam_cffnet map``: whole-scene landslide mapping from the command line (wiring only)."""

from __future__ import annotations

import argparse
import json

__all__ = ['main']

EPILOG = """examples:
  python -m sam_cffnet map --checkpoint runs/bijie/best.ckpt --input scene.tif --output scene_landslides.tif \\
      --polygons scene_landslides.gpkg --min-area 500
  python -m sam_cffnet map --reference-checkpoint checkpoints/GVLM_best.pth.tar --input site.png --output site.tif

The output GeoTIFF (COG layout, uint8, nodata 255) has the input's CRS, transform and size: band 1 =
probability x 254, band 2 = mask (1 landslide). Band selection and normalization come from the checkpoint."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``map``."""
    p = argparse.ArgumentParser(
        prog='python -m sam_cffnet map',
        description='Map landslides over a whole scene (GeoTIFF, PNG, JPEG) with sliding windows; write a '
        'georeferenced Cloud-Optimized GeoTIFF and optional polygons.',
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument('--checkpoint', help='a sam_cffnet training checkpoint (.ckpt) or an exported one')
    src.add_argument('--reference-checkpoint', help="the authors' released {BJL,L4S,GVLM}_best.pth.tar")
    p.add_argument('--sam-checkpoint', help='SAM weights (sam_vit_l_0b3195.pth) when they moved since training')
    p.add_argument('--input', required=True, help='the scene: GeoTIFF, or PNG/JPEG (pixel coordinates)')
    p.add_argument('--output', required=True, help='the GeoTIFF to write')
    p.add_argument('--tile-size', type=int, default=None, help='window edge (default: training tile size)')
    p.add_argument('--overlap', type=int, default=None, help='overlap between windows (default: tile size / 4)')
    p.add_argument('--batch-size', type=int, default=8, help='windows per forward pass (default 8)')
    p.add_argument('--precision', default='32', choices=['32', 'bf16', '16'], help='autocast precision')
    p.add_argument('--device', default=None, help='cpu, cuda, cuda:1 ... (default: cuda if available)')
    p.add_argument('--threshold', type=float, default=None, help="mask rule p > threshold (default: checkpoint's)")
    p.add_argument('--no-probability', action='store_true', help='write only the binary mask band')
    p.add_argument('--no-mask', action='store_true', help='write only the probability band')
    p.add_argument('--polygons', default=None, help='also write polygons (.geojson or .gpkg) in the input CRS')
    p.add_argument('--min-area', type=float, default=0.0, help='minimum polygon area (CRS units^2, or pixels)')
    p.add_argument('--block-width', type=int, default=4096, help='widest column block held in memory (pixels)')
    p.add_argument('--overwrite', action='store_true', help='replace existing outputs')
    p.add_argument('--quiet', action='store_true', help='no progress bar')
    return p


def main(argv: list[str] | None = None) -> int:
    """Run ``map``; returns the exit code. Bad input raises (the top-level CLI prints it as one line, exit 2)."""
    args = build_parser().parse_args(argv)
    from .scene import load_mapping_model, map_scene

    model, pre, threshold = load_mapping_model(
        args.checkpoint, args.reference_checkpoint, args.sam_checkpoint, map_location='cpu'
    )
    summary = map_scene(
        model, args.input, args.output, tile_size=args.tile_size, overlap=args.overlap,
        batch_size=args.batch_size, precision=args.precision, preprocessing=pre,
        write_probability=not args.no_probability, write_mask=not args.no_mask, polygons_path=args.polygons,
        min_area=args.min_area, overwrite=args.overwrite,
        threshold=args.threshold if args.threshold is not None else threshold, device=args.device,
        block_width=args.block_width, progress=not args.quiet,
    )  # fmt: skip
    print(json.dumps(summary, indent=2, default=str))
    return 0
