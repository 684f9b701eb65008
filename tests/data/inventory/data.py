#!/usr/bin/env python3
"""Write a small fake landslide inventory: UTM GeoTIFF scene(s), landslide polygons in EPSG:4326, an optional DEM.

What a practitioner brings (``InventoryDataModule``'s input), at a size the tests can afford:

* ``scenes/scene_<i>.tif``: RGB uint8, EPSG:32648 (UTM 48N), 2 m pixels, tiled + DEFLATE, nodata 0 in a triangle at
  the top-left corner of the first scene (a real scene's collar); scenes sit side by side, west to east;
* ``landslides.geojson`` (or ``.gpkg`` / ``.shp``): irregular landslide polygons in EPSG:4326 (as inventories are
  usually distributed), painted into the imagery as bare, bright soil on a vegetated background so a model can learn
  them;
* ``dem.tif`` (optional): float32 elevation on a coarser grid (4 m), nodata -9999, covering ``dem_coverage`` of the
  scenes' width.

Run as a script to write into ``./data`` next to this file; tests call :func:`make_inventory` with a temporary
folder. The helpers :func:`write_geotiff` and :func:`write_vector` write the bad inputs of the tests.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import rasterio
import rasterio.features
import shapely
from affine import Affine

CRS = 'EPSG:32648'
ORIGIN = (500_000.0, 3_000_000.0)  # top-left corner of the first scene (UTM metres)


def write_geotiff(
    path: Path, data: np.ndarray, transform: Affine, crs: str | None = CRS, nodata: float | None = None
) -> Path:
    """Write ``data`` ``(C, H, W)`` as a tiled, DEFLATE-compressed GeoTIFF and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    c, h, w = data.shape
    profile: dict[str, Any] = {'driver': 'GTiff', 'height': h, 'width': w, 'count': c, 'dtype': data.dtype.name,
                               'crs': crs, 'transform': transform, 'nodata': nodata, 'compress': 'deflate'}  # fmt: skip
    if h >= 128 and w >= 128:
        profile.update(tiled=True, blockxsize=128, blockysize=128)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # NotGeoreferencedWarning for the crs=None case of the tests
        with rasterio.open(path, 'w', **profile) as dst:
            dst.write(data)
    return path


def write_vector(path: Path, geometries: list[Any], crs: str | None, **columns: list[Any]) -> Path:
    """Write geometries (+ attribute columns) as GeoJSON, GeoPackage or Shapefile, chosen by the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    driver = {'.geojson': 'GeoJSON', '.json': 'GeoJSON', '.gpkg': 'GPKG', '.shp': 'ESRI Shapefile'}[path.suffix]
    frame = gpd.GeoDataFrame({'id': list(range(len(geometries))), **columns}, geometry=geometries, crs=crs)
    frame.to_file(path, driver=driver)
    return path


def landslide_polygon(rng: np.random.Generator, cx: float, cy: float, radius: float) -> shapely.Polygon:
    """An irregular, valid blob: 14 vertices at a noisy radius around ``(cx, cy)`` (pixel or map units)."""
    angles = np.sort(rng.uniform(0, 2 * np.pi, 14))
    radii = radius * rng.uniform(0.6, 1.3, 14)
    ring = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles) * rng.uniform(0.6, 1.4)], 1)
    return shapely.make_valid(shapely.Polygon(ring)).buffer(0)


def scene_transform(index: int, size: int, res: float, origin: tuple[float, float] = ORIGIN) -> Affine:
    """Geotransform of scene ``index`` (scenes are placed west to east, without overlap)."""
    return Affine(res, 0.0, origin[0] + index * size * res, 0.0, -res, origin[1])


def make_inventory(
    root: Path,
    scenes: int = 1,
    size: int = 320,
    res: float = 2.0,
    landslides_per_scene: int = 8,
    dem: bool = False,
    dem_res: float = 4.0,
    dem_coverage: float = 1.0,
    nodata_corner: bool = True,
    labels_crs: str = 'EPSG:4326',
    labels_format: str = 'geojson',
    seed: int = 0,
) -> dict[str, Any]:
    """Write the fake inventory under ``root``.

    Returns:
        ``{'images': [scene paths], 'labels': polygon file, 'dem': DEM path or None, 'polygons': the landslide
        polygons in the scenes' CRS (GeoDataFrame), 'crs': CRS, 'res': res, 'size': size}``.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    images: list[str] = []
    polygons: list[shapely.Polygon] = []
    for s in range(scenes):
        transform = scene_transform(s, size, res)
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        # vegetated background: smooth green texture plus noise
        wave = np.sin(xx / 23.0 + s) * np.cos(yy / 31.0) * 18
        rgb = np.stack([55 + wave, 95 + wave, 50 + 0.5 * wave]) + rng.normal(0, 9, (3, size, size))
        blobs: list[shapely.Polygon] = []
        margin = max(12, size // 12)
        while len(blobs) < landslides_per_scene:
            radius = float(rng.uniform(size / 40, size / 14))
            cx, cy = rng.uniform(margin + radius, size - margin - radius, 2)
            if nodata_corner and s == 0 and cx + cy < size / 3 + 2 * radius:
                continue  # keep landslides out of the nodata collar
            blob = landslide_polygon(rng, float(cx), float(cy), radius)
            if any(blob.distance(b) < 3 for b in blobs):
                continue
            blobs.append(blob)
        pixel_to_map = [transform.a, transform.b, transform.d, transform.e, transform.xoff, transform.yoff]
        scene_polys = [shapely.affinity.affine_transform(b, pixel_to_map) for b in blobs]
        mask = rasterio.features.rasterize([(p, 1) for p in scene_polys], out_shape=(size, size), transform=transform)
        soil = np.stack([175 + 0 * xx, 145 + 0 * xx, 115 + 0 * xx]) + rng.normal(0, 12, (3, size, size))
        rgb = np.where(mask[None] > 0, soil, rgb)
        data = np.clip(np.round(rgb), 1, 255).astype(np.uint8)  # 0 is kept for nodata
        nodata = None
        if nodata_corner and s == 0:
            data[:, (xx + yy) < size / 3] = 0
            nodata = 0
        images.append(str(write_geotiff(root / 'scenes' / f'scene_{s}.tif', data, transform, CRS, nodata)))
        polygons += scene_polys
    frame = gpd.GeoDataFrame({'id': range(len(polygons))}, geometry=polygons, crs=CRS)
    labels = root / f'landslides.{ {"geojson": "geojson", "gpkg": "gpkg", "shp": "shp"}[labels_format] }'
    write_vector(labels, list(frame.to_crs(labels_crs).geometry), labels_crs)
    dem_path = None
    if dem:
        width_m = scenes * size * res * dem_coverage
        w, h = max(1, round(width_m / dem_res)), round(size * res / dem_res)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        elevation = 1200 + 0.8 * xx + 40 * np.sin(yy / 9.0) * np.cos(xx / 13.0)
        dem_transform = Affine(dem_res, 0.0, ORIGIN[0], 0.0, -dem_res, ORIGIN[1])
        dem_path = str(write_geotiff(root / 'dem.tif', elevation[None].astype(np.float32), dem_transform, CRS, -9999.0))
    return {'images': images, 'labels': str(labels), 'dem': dem_path, 'polygons': frame, 'crs': CRS, 'res': res,
            'size': size}  # fmt: skip


if __name__ == '__main__':
    import argparse

    parser = argparse.ArgumentParser(description='Write a fake landslide inventory (UTM scenes, EPSG:4326 polygons).')
    parser.add_argument('--out', default=str(Path(__file__).parent / 'data'), help='output folder')
    parser.add_argument('--scenes', type=int, default=2, help='scenes, side by side (default 2)')
    parser.add_argument('--size', type=int, default=320, help='scene edge in pixels (default 320)')
    parser.add_argument('--landslides', type=int, default=8, help='landslides per scene (default 8)')
    parser.add_argument('--dem', action='store_true', help='also write dem.tif (4 m)')
    parser.add_argument('--format', default='geojson', choices=['geojson', 'gpkg', 'shp'], help='polygon file format')
    parser.add_argument('--seed', type=int, default=0)
    a = parser.parse_args()
    out = make_inventory(Path(a.out), scenes=a.scenes, size=a.size, landslides_per_scene=a.landslides, dem=a.dem,
                         labels_format=a.format, seed=a.seed)  # fmt: skip
    print('\n'.join(f'{key}: {out[key]}' for key in ('images', 'labels', 'dem')))
