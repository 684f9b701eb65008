"""Tests for the Landslide4Sense dataset."""

import shutil
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from conftest import REAL_DATA
from matplotlib.figure import Figure
from torchgeo.datasets import DatasetNotFoundError, RGBBandsMissingError

from sam_cffnet.datasets import DatasetLayoutError, Landslide4Sense

REAL = REAL_DATA / 'landslide4sense'


def test_train(l4s_root: Path) -> None:
    ds = Landslide4Sense(l4s_root, split='train')
    assert len(ds) == 10 and ds.has_masks
    s = ds[0]
    assert set(s) == {'image', 'mask'}
    assert s['image'].shape == (14, 16, 16) and s['image'].dtype == torch.float32
    assert s['mask'].shape == (16, 16) and s['mask'].dtype == torch.long
    assert set(s['mask'].unique().tolist()) <= {0, 1}


def test_numeric_order(l4s_root: Path) -> None:
    ds = Landslide4Sense(l4s_root, split='train', bands=['B1'])
    assert [p.name for p in ds.images][-2:] == ['image_9.h5', 'image_10.h5']
    assert [int(ds[i]['image'][0, 0, 0]) for i in range(len(ds))] == list(range(1, 11))


@pytest.mark.parametrize(
    ('bands', 'expected'),
    [('rgb', ['B4', 'B3', 'B2']), ('all', list(Landslide4Sense.all_bands)), ([3, 2, 1], ['B4', 'B3', 'B2']),
     (['B8', 'slope'], ['B8', 'slope']), ('B12', ['B12'])],
)  # fmt: skip
def test_band_selection(l4s_root: Path, bands: object, expected: list[str]) -> None:
    ds = Landslide4Sense(l4s_root, split='val', bands=bands)  # type: ignore[arg-type]
    assert list(ds.bands) == expected
    full = Landslide4Sense(l4s_root, split='val')[1]['image']
    assert torch.equal(ds[1]['image'], full[[Landslide4Sense.all_bands.index(b) for b in expected]])


def test_dem(l4s_root: Path) -> None:
    s = Landslide4Sense(l4s_root, split='train', bands='rgb', dem_mode='separate')[0]
    assert s['image'].shape[0] == 3 and s['dem'].shape == (2, 16, 16)
    s = Landslide4Sense(l4s_root, split='train', bands='rgb', dem_mode='band')[0]
    assert s['image'].shape[0] == 5
    with pytest.raises(ValueError, match='must not include'):
        Landslide4Sense(l4s_root, bands='all', dem_mode='separate')


def test_split_without_masks(l4s_root: Path) -> None:
    ds = Landslide4Sense(l4s_root, split='test')
    assert not ds.has_masks and len(ds) == 2
    assert set(ds[0]) == {'image'}
    with pytest.raises(DatasetNotFoundError, match='has no masks'):
        Landslide4Sense(l4s_root, split='test', require_masks=True)


def test_invalid_args(l4s_root: Path) -> None:
    with pytest.raises(ValueError, match='split must be'):
        Landslide4Sense(l4s_root, split='foo')  # type: ignore[arg-type]
    with pytest.raises(ValueError, match='unknown band'):
        Landslide4Sense(l4s_root, bands=['B8A'])
    with pytest.raises(ValueError, match='unknown band'):
        Landslide4Sense(l4s_root, bands=[14])
    with pytest.raises(ValueError, match='nan_policy'):
        Landslide4Sense(l4s_root, nan_policy='ignore')  # type: ignore[arg-type]


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match='does not exist'):
        Landslide4Sense(tmp_path / 'nope')
    with pytest.raises(DatasetNotFoundError, match=r'TrainData.img'):
        Landslide4Sense(tmp_path)
    (tmp_path / 'TrainData' / 'img').mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match=r'no \.h5 files.*\nExpected layout'):
        Landslide4Sense(tmp_path)


@pytest.fixture
def l4s_copy(l4s_root: Path, tmp_path: Path) -> Path:
    dst = tmp_path / 'l4s'
    shutil.copytree(l4s_root, dst)
    return dst


def test_image_without_mask(l4s_copy: Path) -> None:
    (l4s_copy / 'TrainData' / 'mask' / 'mask_3.h5').unlink()
    with pytest.raises(DatasetLayoutError, match=r'image_3\.h5: image without mask'):
        Landslide4Sense(l4s_copy)


def test_mask_size_mismatch(l4s_copy: Path) -> None:
    with h5py.File(l4s_copy / 'TrainData' / 'mask' / 'mask_2.h5', 'w') as f:
        f.create_dataset('mask', data=np.zeros((8, 8), np.uint8))
    with pytest.raises(DatasetLayoutError, match=r'mask_2\.h5: mask shape \(8, 8\)'):
        Landslide4Sense(l4s_copy)


def test_wrong_band_count(l4s_copy: Path) -> None:
    with h5py.File(l4s_copy / 'TrainData' / 'img' / 'image_4.h5', 'w') as f:
        f.create_dataset('img', data=np.zeros((16, 16, 13)))
    with pytest.raises(DatasetLayoutError, match=r'image_4\.h5: expected 14 bands'):
        Landslide4Sense(l4s_copy)


def test_wrong_key(l4s_copy: Path) -> None:
    with h5py.File(l4s_copy / 'TrainData' / 'img' / 'image_5.h5', 'w') as f:
        f.create_dataset('image', data=np.zeros((16, 16, 14)))
    with pytest.raises(DatasetLayoutError, match=r"image_5\.h5: no dataset 'img'"):
        Landslide4Sense(l4s_copy)


def test_truncated_file(l4s_copy: Path) -> None:
    path = l4s_copy / 'TrainData' / 'img' / 'image_6.h5'
    path.write_bytes(path.read_bytes()[:-500])
    with pytest.raises(DatasetLayoutError, match=r'image_6\.h5: unreadable or truncated'):
        Landslide4Sense(l4s_copy)


def test_nan(l4s_copy: Path) -> None:
    path = l4s_copy / 'ValidData' / 'img' / 'image_1.h5'
    img = np.ones((16, 16, 14))
    img[2, 3, 4] = np.nan
    with h5py.File(path, 'w') as f:
        f.create_dataset('img', data=img)
    ds = Landslide4Sense(l4s_copy, split='val')
    with pytest.warns(RuntimeWarning, match=r'image_1\.h5: 1 NaN/inf values replaced by 0'):
        s = ds[0]
    assert torch.isfinite(s['image']).all() and s['image'][4, 2, 3] == 0
    with pytest.raises(DatasetLayoutError, match='NaN'):
        Landslide4Sense(l4s_copy, split='val', nan_policy='error')[0]


def test_chw_layout(l4s_copy: Path) -> None:
    with h5py.File(l4s_copy / 'TestData' / 'img' / 'image_1.h5', 'w') as f:
        f.create_dataset('img', data=np.arange(14, dtype=float)[:, None, None] * np.ones((14, 16, 16)))
    s = Landslide4Sense(l4s_copy, split='test')[0]
    assert s['image'].shape == (14, 16, 16) and s['image'][5].eq(5).all()


def test_plot(l4s_root: Path) -> None:
    ds = Landslide4Sense(l4s_root, split='train', bands='rgb')
    s = ds[0]
    assert isinstance(ds.plot(s), Figure)
    s['prediction'] = s['mask']
    assert isinstance(ds.plot(s, suptitle='p'), Figure)
    ds = Landslide4Sense(l4s_root, split='train', bands=['B8'])
    with pytest.raises(RGBBandsMissingError):
        ds.plot(ds[0])


@pytest.mark.skipif(not REAL.is_dir(), reason='real L4S samples not available')
def test_real_samples() -> None:
    ds = Landslide4Sense(REAL, split='test', bands='all')
    assert [p.name for p in ds.images] == [f'image_{n}.h5' for n in (31, 37, 39, 52, 63, 83, 89, 90)]
    assert not ds.has_masks
    for i in range(len(ds)):
        s = ds[i]
        assert set(s) == {'image'}
        img = s['image']
        assert img.shape == (14, 128, 128) and img.dtype == torch.float32
        assert torch.isfinite(img).all() and img.min() >= 0
        assert img[9].max() < 60  # B10 cirrus up to ~50
        assert img[12].max() < 4 and img[13].max() < 5  # slope 0..3.6, DEM 0.1..4.4
    assert Landslide4Sense(REAL, split='test', bands='rgb')[0]['image'].shape == (3, 128, 128)


# ------------------------------------------------------------------------------------------ label encoding
def _write_mask(root: Path, n: int, mask: np.ndarray, split: str = 'TrainData') -> Path:
    path = root / split / 'mask' / f'mask_{n}.h5'
    with h5py.File(path, 'w') as f:
        f.create_dataset('mask', data=mask)
    return path


def _pattern(a: float, b: float, dtype: type = np.uint8) -> np.ndarray:
    mask = np.full((16, 16), a, dtype=dtype)
    mask[4:9, 2:12] = b
    return mask


def test_mask_1_2_is_refused(l4s_copy: Path) -> None:
    # background coded 1, landslide 2: `> 0` would make every pixel landslide
    _write_mask(l4s_copy, 7, _pattern(1, 2))
    with pytest.raises(DatasetLayoutError, match=r'mask_7\.h5: label values \{1, 2\}.*every pixel would be landslide'):
        Landslide4Sense(l4s_copy)
    ds = Landslide4Sense(l4s_copy, verify=False)  # caught when the mask is read
    assert ds[0]['mask'].max() <= 1
    with pytest.raises(DatasetLayoutError, match=r'mask_7\.h5'):
        ds[6]


@pytest.mark.parametrize('dtype', [np.uint8, np.float32, np.float64])
def test_mask_0_255_is_read_with_a_warning(l4s_copy: Path, dtype: type) -> None:
    _write_mask(l4s_copy, 2, _pattern(0, 255, dtype))
    _write_mask(l4s_copy, 5, _pattern(0, 255, dtype))
    with pytest.warns(UserWarning, match=r'mask_2\.h5: label values \{0, 255\}.*documented as \{0, 1\}.*1 more'):
        ds = Landslide4Sense(l4s_copy)
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # told once at construction, not again for every read
        assert torch.equal(ds[1]['mask'], torch.from_numpy(_pattern(0, 1).astype(np.int64)))
        ds[4]
    unchecked = Landslide4Sense(l4s_copy, verify=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        epoch = [unchecked[i]['mask'] for i in range(len(unchecked))]
    assert [str(w.message).split(':')[0] for w in caught] == [str(l4s_copy / 'TrainData' / 'mask' / 'mask_2.h5')]
    assert torch.equal(epoch[4], torch.from_numpy(_pattern(0, 1).astype(np.int64)))


def test_float_masks(l4s_copy: Path) -> None:
    _write_mask(l4s_copy, 1, _pattern(0.0, 1.0, np.float32))
    assert Landslide4Sense(l4s_copy)[0]['mask'].sum() == 50
    _write_mask(l4s_copy, 1, _pattern(0.0, 0.5, np.float32))  # soft labels: `> 0` would make 0.5 landslide
    with pytest.raises(DatasetLayoutError, match=r'mask_1\.h5: label values \{0, 0\.5\}: \{0\.5\} not documented'):
        Landslide4Sense(l4s_copy)


def test_nan_in_mask(l4s_copy: Path) -> None:
    mask = _pattern(0.0, 1.0, np.float32)
    mask[0, 0] = np.nan
    _write_mask(l4s_copy, 1, mask, 'ValidData')
    with pytest.warns(RuntimeWarning, match=r'mask_1\.h5: 1 NaN/inf values replaced by 0'):
        s = Landslide4Sense(l4s_copy, split='val')[0]
    assert s['mask'][0, 0] == 0 and s['mask'].sum() == 50
    with pytest.raises(DatasetLayoutError, match=r'mask_1\.h5: 1 NaN/inf'):
        Landslide4Sense(l4s_copy, split='val', nan_policy='error')
