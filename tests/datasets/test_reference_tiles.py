"""Tests for the authors' H5 tile format."""

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from torchgeo.datasets import DatasetNotFoundError, RGBBandsMissingError

from sam_cffnet.datasets import DatasetLayoutError, ReferenceTiles


def test_getitem(reference_root: Path) -> None:
    ds = ReferenceTiles(reference_root, 'train')
    assert len(ds) == 6 and len(ReferenceTiles(reference_root, 'val')) == 3
    s = ds[0]
    assert s['image'].shape == (3, 32, 32) and s['image'].dtype == torch.float32
    assert s['mask'].shape == (32, 32) and s['mask'].dtype == torch.long
    assert s['image'].max() <= 255 and s['image'].max() > 1  # raw uint8 values, not divided
    assert s['mask'][0, 0] == 0 and s['mask'][0, 1] == 1  # label > 128 (128 -> 0, 129 -> 1)
    assert s['mask'][:16].float().mean() > 0.99 and s['mask'][16:].sum() == 0


def test_sorted_files(reference_root: Path) -> None:
    ds = ReferenceTiles(reference_root, 'train')
    assert ds.files == sorted(ds.files)


def test_errors(reference_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match='split must be'):
        ReferenceTiles(reference_root, 'test')  # type: ignore[arg-type]
    with pytest.raises(DatasetNotFoundError, match='does not exist'):
        ReferenceTiles(tmp_path / 'nope')
    with pytest.raises(DatasetNotFoundError, match='missing folder'):
        ReferenceTiles(tmp_path)
    root = tmp_path / 'r'
    shutil.copytree(reference_root, root)
    bad = root / 'val' / 'bad.h5'
    with h5py.File(bad, 'w') as f:
        f.create_dataset('image', data=np.zeros((32, 32, 4), np.uint8))
        f.create_dataset('label', data=np.zeros((32, 32), np.uint8))
    with pytest.raises(DatasetLayoutError, match=r'bad\.h5: expected 3 bands'):
        ReferenceTiles(root, 'val')
    with h5py.File(bad, 'w') as f:
        f.create_dataset('image', data=np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(DatasetLayoutError, match="no dataset 'label'"):
        ReferenceTiles(root, 'val')
    with h5py.File(bad, 'w') as f:
        f.create_dataset('image', data=np.zeros((32, 32, 3), np.uint8))
        f.create_dataset('label', data=np.zeros((16, 16), np.uint8))
    with pytest.raises(DatasetLayoutError, match='does not match'):
        ReferenceTiles(root, 'val')
    bad.write_bytes(b'\x89HDF\r\n\x1a\n' + b'\0' * 10)
    with pytest.raises(DatasetLayoutError, match='unreadable or truncated'):
        ReferenceTiles(root, 'val')


def test_plot(reference_root: Path) -> None:
    ds = ReferenceTiles(reference_root, 'val')
    s = ds[0]
    s['prediction'] = s['mask']
    assert isinstance(ds.plot(s), Figure)
    with pytest.raises(RGBBandsMissingError):
        ds.plot({'image': s['image'][:1], 'mask': s['mask']})


def _write(path: Path, label: np.ndarray) -> None:
    with h5py.File(path, 'w') as f:
        f.create_dataset('image', data=np.zeros((*label.shape, 3), np.uint8))
        f.create_dataset('label', data=label)


def test_01_label_is_refused(reference_root: Path, tmp_path: Path) -> None:
    # the authors binarize with `label > 128`: a 0/1 label would be all background
    root = tmp_path / 'r'
    shutil.copytree(reference_root, root)
    label = np.zeros((32, 32), np.uint8)
    label[:10] = 1
    _write(root / 'val' / 'z_bad.h5', label)
    with pytest.raises(DatasetLayoutError, match=r'z_bad\.h5: label values \{0, 1\} \(a 0/1 mask\).*> 128'):
        ReferenceTiles(root, 'val')
    ds = ReferenceTiles(root, 'val', verify=False)
    assert ds[0]['mask'].sum() > 0
    with pytest.raises(DatasetLayoutError, match=r'z_bad\.h5: label values \{0, 1\}'):
        ds[3]
    _write(root / 'val' / 'z_bad.h5', np.full((32, 32), 200, np.uint8))  # `> 128` everywhere, yet not 255
    with pytest.raises(DatasetLayoutError, match=r'z_bad\.h5: label values \{200\}.*every pixel would be landslide'):
        ReferenceTiles(root, 'val')
    _write(root / 'val' / 'z_bad.h5', np.full((32, 32), 255, np.uint8))  # a tile that is all landslide: fine
    assert ReferenceTiles(root, 'val')[3]['mask'].all()
