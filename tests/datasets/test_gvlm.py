"""Tests for the GVLM dataset (windowed reads of large scenes)."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image
from torchgeo.datasets import DatasetNotFoundError, RGBBandsMissingError

from sam_cffnet.datasets import GVLM, DatasetLayoutError, tile_starts, tile_windows


def test_tile_starts() -> None:
    assert tile_starts(100, 32, 32) == [0, 32, 64, 68]
    assert tile_starts(64, 32, 32) == [0, 32]
    assert tile_starts(20, 32, 32) == [0]
    assert tile_starts(100, 32, 16) == [0, 16, 32, 48, 64, 68]
    assert tile_windows(40, 70, 32) == [(0, 0), (0, 32), (0, 38), (8, 0), (8, 32), (8, 38)]
    with pytest.raises(ValueError, match='positive'):
        tile_starts(10, 0, 1)


def test_tiles(gvlm_root: Path) -> None:
    ds = GVLM(gvlm_root, tile_size=32)
    assert ds.sites == sorted(ds.sites) and 'A Luoi_Vietnam' in ds.sites and len(ds.sites) == 5
    expected = sum(len(tile_windows(h, w, 32)) for h, w in ds.scene_shapes.values())
    assert len(ds) == expected
    s = ds[0]
    assert set(s) == {'image', 'mask'}
    assert s['image'].shape == (3, 32, 32) and s['image'].dtype == torch.float32
    assert s['mask'].shape == (32, 32) and s['mask'].dtype == torch.long
    assert 0 <= s['image'].min() and s['image'].max() <= 255


def test_window_content(gvlm_root: Path) -> None:
    ds = GVLM(gvlm_root, sites=['A Luoi_Vietnam'], tile_size=32)
    img = np.asarray(Image.open(ds.data_root / 'A Luoi_Vietnam' / 'im.png'))
    ref = np.asarray(Image.open(ds.data_root / 'A Luoi_Vietnam' / 'ref.png'))
    for i, (_, r, c) in enumerate(ds.tiles):
        s = ds[i]
        assert np.array_equal(s['image'].permute(1, 2, 0).numpy(), img[r : r + 32, c : c + 32])
        assert np.array_equal(s['mask'].numpy(), ref[r : r + 32, c : c + 32] > 127)


def test_small_scene_padded(gvlm_root: Path) -> None:
    ds = GVLM(gvlm_root, sites=['Taitung_China'], tile_size=32)  # 24 x 28 scene
    assert len(ds) == 1
    s = ds[0]
    assert s['image'].shape == (3, 32, 32) and s['image'][:, 24:].sum() == 0 and s['image'][:, :, 28:].sum() == 0


def test_stride(gvlm_root: Path) -> None:
    assert len(GVLM(gvlm_root, sites=['Big Sur_United States'], tile_size=32, stride=16)) == 9


def test_root_is_extraction_folder(gvlm_root: Path) -> None:
    assert len(GVLM(gvlm_root / 'GVLM_Object_Extraction', tile_size=32).sites) == 5


def test_unknown_site(gvlm_root: Path) -> None:
    with pytest.raises(DatasetLayoutError, match='not found'):
        GVLM(gvlm_root, sites=['Atlantis_Nowhere'])


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match='does not exist'):
        GVLM(tmp_path / 'nope')
    (tmp_path / 'GVLM_Object_Extraction' / 'Empty_Site').mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match='Expected layout'):
        GVLM(tmp_path)


@pytest.fixture
def gvlm_copy(gvlm_root: Path, tmp_path: Path) -> Path:
    shutil.copytree(gvlm_root, tmp_path / 'g')
    return tmp_path / 'g' / 'GVLM_Object_Extraction'


def test_image_without_mask(gvlm_copy: Path) -> None:
    (gvlm_copy / 'Kupang_Indonesia' / 'ref.png').unlink()
    with pytest.raises(DatasetLayoutError, match=r'Kupang_Indonesia.im\.png: image without reference'):
        GVLM(gvlm_copy)


def test_size_mismatch(gvlm_copy: Path) -> None:
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(gvlm_copy / 'Shimen_China' / 'ref.png')
    with pytest.raises(DatasetLayoutError, match=r'Shimen_China.ref\.png: reference size 10x10'):
        GVLM(gvlm_copy)


def test_truncated(gvlm_copy: Path) -> None:
    path = gvlm_copy / 'Shimen_China' / 'im.png'
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DatasetLayoutError, match=r'Shimen_China.im\.png: truncated'):
        GVLM(gvlm_copy)


def test_wrong_band_count(gvlm_copy: Path) -> None:
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(gvlm_copy / 'Big Sur_United States' / 'im.png')
    with pytest.raises(DatasetLayoutError, match='expected an RGB image'):
        GVLM(gvlm_copy)


def test_pickle_drops_handles(gvlm_root: Path) -> None:
    import pickle

    ds = GVLM(gvlm_root, tile_size=32)
    ds[0]
    assert ds._handles
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._handles == {} and torch.equal(clone[0]['image'], ds[0]['image'])


def test_plot(gvlm_root: Path) -> None:
    ds = GVLM(gvlm_root, tile_size=32)
    s = ds[0]
    assert isinstance(ds.plot(s), Figure)
    s['prediction'] = s['mask']
    assert isinstance(ds.plot(s, show_titles=False, suptitle='t'), Figure)
    with pytest.raises(RGBBandsMissingError):
        ds.plot({'image': s['image'][:2]})


def test_tiled_cache(gvlm_root: Path, tmp_path: Path) -> None:
    direct = GVLM(gvlm_root, tile_size=32)
    cached = GVLM(gvlm_root, tile_size=32, cache_dir=tmp_path / 'cache')
    assert (tmp_path / 'cache' / 'A Luoi_Vietnam' / 'im.tif').is_file()
    for i in range(0, len(direct), 3):
        a, b = direct[i], cached[i]
        assert torch.equal(a['image'], b['image']) and torch.equal(a['mask'], b['mask'])
    tif = tmp_path / 'cache' / 'A Luoi_Vietnam' / 'im.tif'
    before = tif.stat().st_mtime_ns
    GVLM(gvlm_root, tile_size=32, cache_dir=tmp_path / 'cache')  # reused, not rewritten
    assert tif.stat().st_mtime_ns == before


# ------------------------------------------------------------------------------------------ label encoding
def _ref(gvlm_copy: Path, site: str = 'Shimen_China') -> np.ndarray:
    return np.asarray(Image.open(gvlm_copy / site / 'ref.png'))


def test_01_reference_is_refused(gvlm_copy: Path) -> None:
    # a 0/1 map read with `> 127` would be all background
    path = gvlm_copy / 'Shimen_China' / 'ref.png'
    Image.fromarray((_ref(gvlm_copy) > 0).astype(np.uint8)).save(path)
    with pytest.raises(DatasetLayoutError, match=r'Shimen_China.ref\.png: label values \{0, 1\} \(a 0/1 mask\)'):
        GVLM(gvlm_copy, tile_size=32)
    ds = GVLM(gvlm_copy, sites=['Shimen_China'], tile_size=32, verify=False)
    with pytest.raises(DatasetLayoutError, match=r'Shimen_China.ref\.png: label values \{0, 1\}'):
        [ds[i] for i in range(len(ds))]  # a window holding landslide pixels


def test_palette_reference(gvlm_copy: Path) -> None:
    # palette PNG with indices 0/1 shown black/white: read through the palette (band 1 alone holds 0/1)
    grey = GVLM(gvlm_copy, sites=['Shimen_China'], tile_size=32)
    expected = [grey[i]['mask'] for i in range(len(grey))]
    im = Image.fromarray((_ref(gvlm_copy) > 0).astype(np.uint8), mode='P')
    im.putpalette([0, 0, 0, 255, 255, 255])
    im.save(gvlm_copy / 'Shimen_China' / 'ref.png')
    ds = GVLM(gvlm_copy, sites=['Shimen_China'], tile_size=32)
    assert all(torch.equal(ds[i]['mask'], expected[i]) for i in range(len(ds)))
    assert sum(int(m.sum()) for m in expected) > 0


def test_rgb_reference(gvlm_copy: Path, tmp_path: Path) -> None:
    grey = _ref(gvlm_copy)
    first = GVLM(gvlm_copy, sites=['Shimen_China'], tile_size=32)
    expected = [first[i]['mask'] for i in range(len(first))]
    path = gvlm_copy / 'Shimen_China' / 'ref.png'
    Image.fromarray(np.repeat(grey[..., None], 3, -1)).save(path)  # grey stored as RGB: fine
    for cache in (None, tmp_path / 'cache'):
        ds = GVLM(gvlm_copy, sites=['Shimen_China'], tile_size=32, cache_dir=cache)
        assert all(torch.equal(ds[i]['mask'], expected[i]) for i in range(len(ds)))
    green = np.zeros((*grey.shape, 3), np.uint8)
    green[..., 1] = grey  # band 1 alone would be all background
    Image.fromarray(green).save(path)
    with pytest.raises(DatasetLayoutError, match=r'Shimen_China.ref\.png: colour-coded label'):
        GVLM(gvlm_copy, tile_size=32)
    ds = GVLM(gvlm_copy, sites=['Shimen_China'], tile_size=32, verify=False)
    with pytest.raises(DatasetLayoutError, match='colour-coded'):
        [ds[i] for i in range(len(ds))]


def test_intermediate_reference_values_warn(gvlm_copy: Path) -> None:
    # anti-aliased edges: read with `> 127` and said once
    ref = _ref(gvlm_copy).copy()
    ref[ref.shape[0] // 3 - 1, :] = 128
    Image.fromarray(ref).save(gvlm_copy / 'Shimen_China' / 'ref.png')
    said = r'Shimen_China.ref\.png: label values \{0, 128, 255\}: \{128\} not documented'
    with pytest.warns(UserWarning, match=said):
        ds = GVLM(gvlm_copy, sites=['Shimen_China'], tile_size=32)
    s = ds.read_window('Shimen_China', 0, 0, 96, 50)
    assert torch.equal(s['mask'], torch.from_numpy((ref > 127).astype(np.int64)))


def test_reference_check_streams(tmp_path: Path) -> None:
    # the construction-time check reads the map by strips: peak memory is a fraction of the decoded scene
    import tracemalloc

    from sam_cffnet.datasets.utils import raster_label_values

    h, w = 2048, 1536
    ref = np.zeros((h, w), np.uint8)
    ref[300:900, 200:700] = 255
    path = tmp_path / 'ref.png'
    Image.fromarray(ref).save(path)
    tracemalloc.start()
    values = raster_label_values(path, strip_rows=128)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert values.tolist() == [0, 255]
    assert peak < h * w / 4, f'peak {peak} bytes for a {h * w}-byte scene'
