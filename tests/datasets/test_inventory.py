"""Tests for the inventory datasets: input checks, label cleaning, the torchgeo stack, the cached targets, sampling."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import rasterio.features
import shapely
import torch
from conftest import load_fake_data_generator
from pyproj import CRS
from torchgeo.datasets import RasterDataset, VectorDataset

from sam_cffnet.datasets.inventory import (
    BalancedTileSampler,
    InventoryTiles,
    LandslideInventory,
    read_landslide_polygons,
    resolve_files,
    valid_footprint,
    window_sums,
)
from sam_cffnet.errors import ConfigError, DataError, MissingFileError

UTM = CRS.from_epsg(32648)


@pytest.fixture(scope='module')
def gen() -> ModuleType:
    return load_fake_data_generator('inventory')


@pytest.fixture(scope='module')
def inventory(gen: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return gen.make_inventory(tmp_path_factory.mktemp('inventory'), scenes=2, size=192, dem=True, dem_coverage=0.5)


def _build(tmp_path: Path, images: Any, labels: Any, **kwargs: Any) -> LandslideInventory:
    return LandslideInventory(images, labels, cell=16, cache_dir=str(tmp_path / 'cache'), progress=False,
                              **kwargs).build()  # fmt: skip


def _tiles(inv: LandslideInventory, size: int = 64) -> InventoryTiles:
    """Every non-overlapping tile of the grid that holds only usable pixels."""
    k = size // inv.cell
    full = window_sums(inv.valid_cells, k) == size * size
    rows, cols = np.indices(full.shape)
    cells = np.argwhere(full & (rows % k == 0) & (cols % k == 0))
    land = window_sums(inv.landslide_cells, k)[cells[:, 0], cells[:, 1]] > 0
    return InventoryTiles(inv.dataset(), inv.grid, cells * inv.cell, size, land)


def test_resolve_files(inventory: dict[str, Any], tmp_path: Path) -> None:
    scenes = Path(inventory['images'][0]).parent
    assert resolve_files(str(scenes / '*.tif'), 'images') == inventory['images']
    assert resolve_files(str(scenes), 'images') == inventory['images']  # a folder
    assert resolve_files([inventory['images'][1], inventory['images'][0]], 'images') == inventory['images'][::-1]
    with pytest.raises(MissingFileError, match=r'images: no file matches .*nowhere'):
        resolve_files(str(tmp_path / 'nowhere' / '*.tif'), 'images')
    with pytest.raises(MissingFileError, match=r'labels: .*missing\.gpkg does not exist'):
        resolve_files(str(tmp_path / 'missing.gpkg'), 'labels', 'vector')
    with pytest.raises(MissingFileError, match='holds no'):
        resolve_files(str(tmp_path), 'images')


def test_window_sums_match_brute_force() -> None:
    a = np.random.default_rng(0).integers(0, 5, (7, 9))
    sums = window_sums(a, 3)
    assert sums.shape == (5, 7)
    for r in range(5):
        for c in range(7):
            assert sums[r, c] == a[r : r + 3, c : c + 3].sum()
    assert window_sums(a, 10).size == 0


def test_labels_in_another_crs_are_reprojected(inventory: dict[str, Any]) -> None:
    logged: list[str] = []
    frame = read_landslide_polygons(inventory['labels'], UTM, info=logged.append)
    assert frame.crs == UTM and len(frame) == len(inventory['polygons'])
    assert any('reprojected 16 polygons' in m and 'EPSG:4326 to EPSG:32648' in m for m in logged)
    # the EPSG:4326 file round-trips to the generator's UTM polygons (sub-millimetre)
    for got, expected in zip(frame.geometry, inventory['polygons'].geometry, strict=True):
        assert got.symmetric_difference(expected).area < 1e-3


def test_points_lines_empty_and_unreadable_labels(gen: ModuleType, tmp_path: Path) -> None:
    x, y = 500_100.0, 2_999_800.0
    shapes = [shapely.Point(x, y), shapely.LineString([(x, y), (x + 9, y)]), shapely.box(x, y, x + 9, y + 9)]
    mixed = gen.write_vector(tmp_path / 'points.geojson', shapes, 'EPSG:32648')
    with pytest.raises(DataError, match=r'2 of 3 features are not polygons \(1 LineString, 1 Point.*buffer'):
        read_landslide_polygons(str(mixed), UTM)
    empty = tmp_path / 'empty.geojson'
    empty.write_text('{"type": "FeatureCollection", "features": []}')
    with pytest.raises(DataError, match=r'empty.geojson holds no features \(an empty label file\)'):
        read_landslide_polygons(str(empty), UTM)
    junk = tmp_path / 'junk.gpkg'
    junk.write_text('not a geopackage')
    with pytest.raises(DataError, match=r'junk\.gpkg cannot be read as a vector file'):
        read_landslide_polygons(str(junk), UTM)


def test_invalid_geometries_repaired_or_refused(gen: ModuleType, tmp_path: Path) -> None:
    x, y = 500_100.0, 2_999_800.0
    bowtie = shapely.Polygon([(x, y), (x + 40, y + 40), (x + 40, y), (x, y + 40)])  # self-intersecting
    assert not bowtie.is_valid
    path = gen.write_vector(tmp_path / 'bowtie.gpkg', [bowtie, shapely.box(x, y, x + 5, y + 5)], 'EPSG:32648')
    warned: list[str] = []
    frame = read_landslide_polygons(str(path), UTM, warn=warned.append)
    assert frame.geometry.is_valid.all() and len(frame) == 2
    assert abs(frame.geometry.iloc[0].area - 800.0) < 1e-6  # the two triangles of the bow tie
    assert any('repaired 1 invalid polygon' in w and 'Self-intersection' in w for w in warned)
    with pytest.raises(DataError, match=r'1 of 2 polygons are invalid \(feature #0: Self-intersection'):
        read_landslide_polygons(str(path), UTM, invalid='error')


def test_shapefile_without_crs_needs_labels_crs(gen: ModuleType, inventory: dict[str, Any], tmp_path: Path) -> None:
    shp = gen.write_vector(tmp_path / 'labels.shp', list(inventory['polygons'].geometry), 'EPSG:32648')
    shp.with_suffix('.prj').unlink()
    with pytest.raises(DataError, match=r'has no CRS.*labels_crs'):
        read_landslide_polygons(str(shp), UTM)
    frame = read_landslide_polygons(str(shp), UTM, labels_crs='EPSG:32648')
    assert len(frame) == len(inventory['polygons'])


def test_valid_footprint_excludes_nodata(inventory: dict[str, Any]) -> None:
    path = inventory['images'][0]  # nodata 0 in the top-left triangle (x + y < size / 3)
    with rasterio.open(path) as src:
        valid_pixels = int((src.dataset_mask() > 0).sum())
        pixel = abs(src.transform.a * src.transform.e)
        box = shapely.box(*src.bounds)
    footprint = valid_footprint(path, UTM)
    assert footprint.within(box.buffer(1e-6))
    assert abs(footprint.area / pixel - valid_pixels) < 0.01 * valid_pixels
    with rasterio.open(inventory['images'][1]) as src:  # no nodata: the whole scene
        assert valid_footprint(inventory['images'][1], UTM).equals(shapely.box(*src.bounds))


def test_samples_match_torchgeo_raster_and_vector_datasets(inventory: dict[str, Any], tmp_path: Path) -> None:
    """Our cached targets give exactly the mask torchgeo's own VectorDataset rasterizes from the EPSG:4326 file."""
    inv = _build(tmp_path, inventory['images'], inventory['labels'])
    tiles = _tiles(inv)
    assert len(tiles) >= 8 and tiles.positive.any() and not tiles.positive.all()

    class Scenes(RasterDataset):
        filename_glob = '*.tif'

    scenes = Scenes(inventory['images'])
    vector = VectorDataset(inventory['labels'], crs=scenes.crs, res=scenes.res)
    for i in range(len(tiles)):
        sample = tiles[i]
        query = tiles.geoslice(i)
        assert set(sample) == {'image', 'mask'}
        assert sample['image'].shape == (3, 64, 64) and sample['image'].dtype == torch.float32
        assert sample['mask'].shape == (64, 64) and sample['mask'].dtype == torch.int64
        assert torch.equal(sample['image'], scenes[query]['image'])
        assert torch.equal(sample['mask'], vector[query]['mask'])
        assert bool(sample['mask'].any()) == bool(tiles.positive[i])
    # the labels fall on the painted soil: bright red where mask == 1, vegetation elsewhere
    batch = [tiles[i] for i in range(len(tiles))]
    red = torch.stack([s['image'][0] for s in batch])
    mask = torch.stack([s['mask'] for s in batch]).bool()
    assert red[mask].float().median() > 150 and red[~mask].float().median() < 110
    assert tiles[tiles.geoslice(0)]['image'].shape == (3, 64, 64)  # torchgeo queries pass through


def test_label_raster_gives_the_same_masks(inventory: dict[str, Any], tmp_path: Path) -> None:
    polygons = inventory['polygons']
    mask_path = tmp_path / 'mask.tif'
    with rasterio.open(inventory['images'][0]) as first, rasterio.open(inventory['images'][1]) as second:
        transform = first.transform
        width, height = first.width + second.width, first.height
    burned = rasterio.features.rasterize([(g, 255) for g in polygons.geometry], out_shape=(height, width),
                                         transform=transform, dtype='uint8')  # fmt: skip
    profile = {'driver': 'GTiff', 'width': width, 'height': height, 'count': 1, 'dtype': 'uint8', 'crs': 'EPSG:32648',
               'transform': transform}  # fmt: skip
    with rasterio.open(mask_path, 'w', **profile) as dst:
        dst.write(burned[None])
    from_raster = _build(tmp_path / 'raster', inventory['images'], str(mask_path))
    from_polygons = _build(tmp_path / 'vector', inventory['images'], inventory['labels'])
    assert np.array_equal(from_raster.landslide_cells, from_polygons.landslide_cells)
    a, b = _tiles(from_raster), _tiles(from_polygons)
    for i in range(len(a)):
        assert torch.equal(a[i]['mask'], b[i]['mask'])


def test_mixed_band_counts_and_data_types_are_refused(
    gen: ModuleType, inventory: dict[str, Any], tmp_path: Path
) -> None:
    five = gen.write_geotiff(tmp_path / 'five.tif', np.ones((5, 64, 64), np.uint8), gen.scene_transform(3, 64, 2.0))
    with pytest.raises(DataError, match=r'different band counts \(scene_0.tif: 3, five.tif: 5\)'):
        LandslideInventory([inventory['images'][0], str(five)], inventory['labels'])
    wide = gen.write_geotiff(tmp_path / 'wide.tif', np.ones((3, 64, 64), np.uint16), gen.scene_transform(3, 64, 2.0))
    with pytest.raises(DataError, match=r'different data types \(scene_0.tif: uint8, wide.tif: uint16\)'):
        LandslideInventory([inventory['images'][0], str(wide)], inventory['labels'])


def test_mixed_resolutions_are_resampled_and_logged(gen: ModuleType, inventory: dict[str, Any], tmp_path: Path) -> None:
    coarse = gen.make_inventory(tmp_path / 'coarse', size=96, res=4.0, nodata_corner=False, seed=3)
    moved = tmp_path / 'coarse_east.tif'  # the 4 m scene east of the two 2 m scenes
    with rasterio.open(coarse['images'][0]) as src:
        data = src.read()
    gen.write_geotiff(moved, data, gen.scene_transform(2, 192, 2.0) @ rasterio.Affine.scale(2.0))
    logged: list[str] = []
    inv = LandslideInventory([*inventory['images'], str(moved)], inventory['labels'], cell=16,
                             cache_dir=str(tmp_path / 'cache'), info=logged.append, progress=False)  # fmt: skip
    assert inv.res == (2.0, 2.0)
    inv.build()
    assert any('resolutions differ' in m and 'coarse_east.tif: 4 x 4' in m and 'bilinear' in m for m in logged)
    # a tile in the 4 m scene comes out at 2 m: 64 px covering 32 of its pixels, smoothly upsampled
    east = inv.grid.left + 2 * 192 * 2.0
    query = (slice(east, east + 128.0, 2.0), slice(3_000_000.0 - 128.0, 3_000_000.0, 2.0))
    image = inv.dataset()[query]['image']
    source = torch.from_numpy(data[:, :32, :32]).float()
    assert image.shape == (3, 64, 64)
    assert abs(float(image.mean()) - float(source.mean())) < 2.0
    nearest = LandslideInventory([str(moved)], inventory['labels'], resampling='nearest', res=2.0)
    assert nearest.image_dataset()[query]['image'][:, ::2, ::2].equal(source)


def test_dem_partial_coverage_and_no_coverage(gen: ModuleType, inventory: dict[str, Any], tmp_path: Path) -> None:
    warned: list[str] = []
    inv = LandslideInventory(inventory['images'], inventory['labels'], inventory['dem'], cell=16,
                             cache_dir=str(tmp_path / 'cache'), warn=warned.append, progress=False).build()  # fmt: skip
    assert any('the DEM covers' in w and 'tiles are taken only where imagery and DEM both exist' in w for w in warned)
    share = float(warned[0].split('covers ')[1].split(' %')[0])
    assert 40 < share < 60  # dem_coverage=0.5 of the width
    tiles = _tiles(inv)
    east_edge = inv.grid.left + 0.5 * 2 * 192 * 2.0
    assert len(tiles) and all(tiles.bounds(i)[2] <= east_edge + 1e-6 for i in range(len(tiles)))
    sample = tiles[0]
    assert sample['dem'].shape == (1, 64, 64) and sample['dem'].dtype == torch.float32
    assert sample['dem'].min() > 1000  # elevations, no -9999 nodata
    far = gen.write_geotiff(tmp_path / 'far_dem.tif', np.ones((1, 16, 16), np.float32),
                            gen.scene_transform(9, 192, 4.0), nodata=-9999.0)  # fmt: skip
    with pytest.raises(DataError, match=r'dem: the DEM \(far_dem.tif\) covers none of the imagery'):
        LandslideInventory(inventory['images'], inventory['labels'], str(far), cache_dir=str(tmp_path / 'c2'),
                           progress=False).build()  # fmt: skip


def test_polygons_outside_the_imagery(gen: ModuleType, inventory: dict[str, Any], tmp_path: Path) -> None:
    frame = gpd.read_file(inventory['labels'])
    far = [shapely.box(10.0, 10.0, 10.001, 10.001), shapely.box(11.0, 10.0, 11.001, 10.001)]
    some = gen.write_vector(tmp_path / 'some.geojson', list(frame.geometry) + far, 'EPSG:4326')
    warned: list[str] = []
    inv = LandslideInventory(inventory['images'], str(some), cell=16, cache_dir=str(tmp_path / 'c'),
                             warn=warned.append, progress=False).build()  # fmt: skip
    assert any('2 of 18 polygons of some.geojson lie outside all imagery' in w for w in warned)
    assert inv.summary['polygons_inside'] == 16
    none = gen.write_vector(tmp_path / 'none.geojson', far, 'EPSG:4326')
    with pytest.raises(DataError, match=r'none of the 2 polygons of none\.geojson overlaps the imagery'):
        LandslideInventory(inventory['images'], str(none), cache_dir=str(tmp_path / 'c'), progress=False).build()


def test_cache_is_reused_and_refreshed(inventory: dict[str, Any], tmp_path: Path) -> None:
    labels = tmp_path / 'labels.geojson'
    shutil.copy(inventory['labels'], labels)
    logged: list[str] = []
    first = LandslideInventory(inventory['images'], str(labels), cell=16, cache_dir=str(tmp_path / 'c'),
                               info=logged.append, progress=False).build()  # fmt: skip
    again = LandslideInventory(inventory['images'], str(labels), cell=16, cache_dir=str(tmp_path / 'c'),
                               info=logged.append, progress=False).build()  # fmt: skip
    assert again.cache_folder == first.cache_folder and any('reused' in m for m in logged)
    assert np.array_equal(again.landslide_cells, first.landslide_cells)
    frame = gpd.read_file(labels).iloc[:4]
    frame.to_file(labels, driver='GeoJSON')  # edited inventory: new cache
    edited = LandslideInventory(inventory['images'], str(labels), cell=16, cache_dir=str(tmp_path / 'c'),
                                progress=False).build()  # fmt: skip
    assert edited.cache_folder != first.cache_folder
    assert edited.landslide_cells.sum() < first.landslide_cells.sum()


def test_settings_checked_before_work(inventory: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match='resampling'):
        LandslideInventory(inventory['images'], inventory['labels'], resampling='fancy')
    with pytest.raises(ConfigError, match='band_names'):
        LandslideInventory(inventory['images'], inventory['labels'], band_names=['a', 'b'])
    with pytest.raises(ConfigError, match='either polygon files or label rasters'):
        LandslideInventory(inventory['images'], [inventory['labels'], inventory['images'][0]])
    inv = LandslideInventory(inventory['images'], inventory['labels'])
    assert inv.band_names == ('red', 'green', 'blue') and inv.res == (2.0, 2.0) and inv.crs == UTM


def test_balanced_sampler() -> None:
    positive = np.array([True] * 10 + [False] * 30)
    sampler = BalancedTileSampler(positive, length=20, negative_ratio=0.25, seed=7)
    epoch0 = list(sampler)
    assert len(epoch0) == 20 and sampler.counts() == (15, 5)
    assert sum(not positive[i] for i in epoch0) == 5
    assert epoch0 == list(sampler)  # same epoch -> same draw
    sampler.set_epoch(1)
    assert list(sampler) != epoch0
    sampler.set_epoch(0)
    assert list(sampler) == epoch0
    fixed = BalancedTileSampler(positive, 20, 0.25, 7, shuffle=False)
    fixed.set_epoch(3)
    assert list(fixed) == epoch0
    assert BalancedTileSampler(np.zeros(5, bool), 8, 0.3, 0).counts() == (0, 8)  # no landslide tile: all negatives
    assert BalancedTileSampler(np.ones(5, bool), 8, 0.3, 0).counts() == (8, 0)


def test_tiles_geodataframe_and_plot(inventory: dict[str, Any], tmp_path: Path) -> None:
    tiles = _tiles(_build(tmp_path, inventory['images'], inventory['labels']))
    frame = tiles.to_geodataframe()
    assert len(frame) == len(tiles) and frame.crs == UTM
    assert frame.geometry.iloc[0].bounds == pytest.approx(tiles.bounds(0))
    fig = tiles.plot(tiles[0], suptitle='tile 0')
    assert len(fig.axes) == 2


def test_reprojection_is_logged_once_per_file(inventory: dict[str, Any], tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    with caplog.at_level(logging.INFO, logger='sam_cffnet.inventory'):
        _build(tmp_path, inventory['images'], inventory['labels'])
    assert caplog.text.count('reprojected 16 polygons') == 1
