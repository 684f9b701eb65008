"""Tests for the Bijie dataset and the demo generator."""

import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REAL_DATA
from matplotlib.figure import Figure
from PIL import Image
from torchgeo.datasets import DatasetNotFoundError, RGBBandsMissingError

from sam_cffnet.datasets import Bijie, DatasetLayoutError, make_demo_bijie

REAL = REAL_DATA / 'bijie'


def test_getitem(bijie_root: Path) -> None:
    ds = Bijie(bijie_root)
    assert len(ds) == 10
    assert sum(ds.is_landslide) == 6
    for i in (0, 9):
        s = ds[i]
        assert set(s) == {'image', 'mask'}
        assert s['image'].dtype == torch.float32 and s['image'].shape[0] == 3
        assert s['mask'].dtype == torch.long and s['mask'].shape == s['image'].shape[1:]
        assert tuple(s['mask'].shape) == ds.sizes[i]
        assert 0 <= s['image'].min() and s['image'].max() <= 255
    assert set(ds[0]['mask'].unique().tolist()) == {0, 1}
    assert ds[9]['mask'].sum() == 0  # non-landslide: synthesized zeros


def test_dem_modes(bijie_root: Path) -> None:
    s = Bijie(bijie_root, dem_mode='separate')[0]
    assert s['dem'].shape == (1, *s['image'].shape[1:]) and s['dem'].dtype == torch.float32
    assert 1000 <= s['dem'].min() and s['dem'].max() < 1600  # raw 16-bit values, resampled to the image grid
    s = Bijie(bijie_root, dem_mode='band')[0]
    assert s['image'].shape[0] == 4 and 'dem' not in s


def test_root_variants(bijie_root: Path) -> None:
    assert len(Bijie(bijie_root / 'Bijie-landslide-dataset')) == 10
    assert len(Bijie(bijie_root, categories=('landslide',))) == 6


def test_transforms(bijie_root: Path) -> None:
    ds = Bijie(bijie_root, transforms=lambda s: {**s, 'image': s['image'] / 255})
    assert ds[0]['image'].max() <= 1


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match=r'Dataset not found.*does not exist'):
        Bijie(tmp_path / 'nope')


def test_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match='Expected layout'):
        Bijie(tmp_path)
    (tmp_path / 'landslide' / 'image').mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match=r'no \.png files'):
        Bijie(tmp_path, categories=('landslide',))


def _copy(root: Path, tmp_path: Path) -> Path:
    dst = tmp_path / 'copy'
    shutil.copytree(root, dst)
    return dst / 'Bijie-landslide-dataset'


def test_image_without_mask(bijie_root: Path, tmp_path: Path) -> None:
    base = _copy(bijie_root, tmp_path)
    (base / 'landslide' / 'mask' / 'df002.png').unlink()
    with pytest.raises(DatasetLayoutError, match=r'df002\.png.*without mask'):
        Bijie(base)


def test_missing_dem(bijie_root: Path, tmp_path: Path) -> None:
    base = _copy(bijie_root, tmp_path)
    (base / 'non-landslide' / 'dem' / 'fyb001.png').unlink()
    assert len(Bijie(base)) == 10  # DEM not requested: fine
    with pytest.raises(DatasetLayoutError, match='without DEM'):
        Bijie(base, dem_mode='separate')


def test_size_mismatch(bijie_root: Path, tmp_path: Path) -> None:
    base = _copy(bijie_root, tmp_path)
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(base / 'landslide' / 'mask' / 'df001.png')
    with pytest.raises(DatasetLayoutError, match=r'df001\.png: mask size 5x5'):
        Bijie(base)


def test_truncated_file(bijie_root: Path, tmp_path: Path) -> None:
    base = _copy(bijie_root, tmp_path)
    path = base / 'non-landslide' / 'image' / 'fyb002.png'
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(DatasetLayoutError, match=r'fyb002\.png: truncated'):
        Bijie(base)
    path.write_bytes(b'not a png')
    with pytest.raises(DatasetLayoutError, match='not a PNG'):
        Bijie(base)


def test_invalid_args(bijie_root: Path) -> None:
    with pytest.raises(ValueError, match='dem_mode must be'):
        Bijie(bijie_root, dem_mode='yes')  # type: ignore[arg-type]
    with pytest.raises(ValueError, match='unknown category'):
        Bijie(bijie_root, categories=('other',))


def test_plot(bijie_root: Path) -> None:
    ds = Bijie(bijie_root)
    s = ds[0]
    assert isinstance(ds.plot(s, suptitle='x'), Figure)
    s['prediction'] = s['mask'].clone()
    assert isinstance(ds.plot(s, show_titles=False), Figure)
    with pytest.raises(RGBBandsMissingError):
        ds.plot({'image': s['image'][:1], 'mask': s['mask']})


def test_demo_generator(tmp_path: Path) -> None:
    t0 = time.perf_counter()
    root = make_demo_bijie(tmp_path, num_landslide=6, num_non_landslide=3, seed=1)
    assert time.perf_counter() - t0 < 2
    ds = Bijie(root, dem_mode='separate')
    assert len(ds) == 9 and sum(ds.is_landslide) == 6
    s = ds[0]
    assert 96 <= s['image'].shape[1] <= 160 and s['mask'].sum() > 0 and s['dem'].shape[0] == 1
    img = s['image']
    scar, veg = img[:, s['mask'] == 1].mean(), img[:, s['mask'] == 0].mean()
    assert scar > veg + 40  # bright bare-soil scars on darker vegetation
    # existing files are kept unless overwrite=True
    path = root / 'landslide' / 'image' / 'df001.png'
    before = path.stat().st_mtime_ns
    make_demo_bijie(tmp_path, num_landslide=6, num_non_landslide=3, seed=2)
    assert path.stat().st_mtime_ns == before
    make_demo_bijie(tmp_path, num_landslide=6, num_non_landslide=3, seed=2, overwrite=True)
    assert path.stat().st_mtime_ns != before


@pytest.mark.skipif(not REAL.is_dir(), reason='real Bijie samples not available')
def test_real_samples() -> None:
    ds = Bijie(REAL)
    assert len(ds) == 15 and sum(ds.is_landslide) == 10
    sizes = dict(zip((f['image'].name for f in ds.files), ds.sizes))
    assert sizes['ls_0002.png'] == (61, 61) and sizes['ls_0261.png'] == (1197, 1239)
    for i in range(len(ds)):
        s = ds[i]
        assert s['image'].dtype == torch.float32 and s['image'].shape[0] == 3
        assert s['mask'].dtype == torch.long and s['mask'].shape == s['image'].shape[1:]
        assert 0 <= s['image'].min() and s['image'].max() <= 255
        if ds.files[i]['landslide']:
            frac = s['mask'].float().mean().item()
            assert 0.005 < frac < 0.5  # spec: 0.5%..47% positive per landslide chip
        else:
            assert s['mask'].sum() == 0
    # RGB means of these chips are in the range of the dataset-wide statistics (0-255 scale)
    s = ds[3]
    assert 20 < s['image'].mean() < 200


# ------------------------------------------------------------------------------------------ label encoding
def _write_mask(path: Path, array: np.ndarray, mode: str | None = None) -> None:
    Image.fromarray(array, mode=mode).save(path)


def _mask_of(base: Path, name: str = 'df001.png') -> np.ndarray:
    return np.asarray(Image.open(base / 'landslide' / 'mask' / name))


def test_01_mask_is_refused(bijie_root: Path, tmp_path: Path) -> None:
    # a 0/1 mask read with the documented `> 127` would be all background: stop, naming the file
    base = _copy(bijie_root, tmp_path)
    path = base / 'landslide' / 'mask' / 'df003.png'
    _write_mask(path, (_mask_of(base, 'df003.png') > 0).astype(np.uint8))
    refused = r'df003\.png: label values \{0, 1\} \(a 0/1 mask\).*\{0, 255\}.*every pixel would be background'
    with pytest.raises(DatasetLayoutError, match=refused):
        Bijie(base)
    ds = Bijie(base, verify=False)  # not checked at construction: caught when the mask is read
    assert ds[0]['mask'].sum() > 0
    with pytest.raises(DatasetLayoutError, match=r'df003\.png: label values \{0, 1\}'):
        ds[2]


@pytest.mark.parametrize(
    ('values', 'match'),
    [((0, 100), 'every pixel would be background'), ((200, 255), 'every pixel would be landslide'),
     ((0, 17, 255), r'\{17\} not documented')],
)  # fmt: skip
def test_undocumented_mask_values(bijie_root: Path, tmp_path: Path, values: tuple[int, ...], match: str) -> None:
    base = _copy(bijie_root, tmp_path)
    mask = np.zeros((20, 24), np.uint8)
    for i, v in enumerate(values):
        mask[i :: len(values)] = v
    _write_mask(base / 'landslide' / 'mask' / 'df001.png', mask)
    with pytest.raises(DatasetLayoutError, match=rf'df001\.png: .*{match}'):
        Bijie(base)


def test_colour_mask_is_refused(bijie_root: Path, tmp_path: Path) -> None:
    # red landslides on black: a grey conversion (luma 76 <= 127) would make them background
    base = _copy(bijie_root, tmp_path)
    grey = _mask_of(base)
    rgb = np.zeros((*grey.shape, 3), np.uint8)
    rgb[..., 0] = grey
    _write_mask(base / 'landslide' / 'mask' / 'df001.png', rgb)
    with pytest.raises(DatasetLayoutError, match=r'df001\.png: colour-coded label'):
        Bijie(base)


@pytest.mark.parametrize('encoding', ['rgb', 'rgba', 'palette', '1-bit', 'la'])
def test_other_png_modes_of_a_0_255_mask(bijie_root: Path, tmp_path: Path, encoding: str) -> None:
    # the same 0/255 mask saved as grey RGB(A), as a palette PNG (indices 0/1 -> black/white), as a 1-bit PNG or
    # with an alpha channel gives exactly the labels of the original single-channel file
    base = _copy(bijie_root, tmp_path)
    path = base / 'landslide' / 'mask' / 'df001.png'
    grey = np.asarray(Image.open(path))
    expected = Bijie(base)[0]['mask']
    if encoding == 'rgb':
        _write_mask(path, np.repeat(grey[..., None], 3, -1))
    elif encoding == 'rgba':
        _write_mask(path, np.dstack([grey, grey, grey, np.full_like(grey, 255)]))
    elif encoding == 'la':
        Image.fromarray(np.dstack([grey, np.full_like(grey, 255)]), mode='LA').save(path)
    elif encoding == 'palette':
        im = Image.fromarray((grey > 0).astype(np.uint8), mode='P')
        im.putpalette([0, 0, 0, 255, 255, 255])
        im.save(path)
    else:
        Image.fromarray(grey > 0).convert('1').save(path)
    assert Image.open(path).mode == {'rgb': 'RGB', 'rgba': 'RGBA', 'palette': 'P', '1-bit': '1', 'la': 'LA'}[encoding]
    assert torch.equal(Bijie(base)[0]['mask'], expected) and expected.sum() > 0
