"""Public names renamed in 0.2.0 still work for one release, with a FutureWarning naming the new name."""

from __future__ import annotations

from pathlib import Path

import pytest

from sam_cffnet.datamodules import BijieDataModule
from sam_cffnet.features import CachedFeatureDataModule


def test_preprocessing_config_is_an_alias_of_preprocessing(bijie_root: Path, tmp_path: Path) -> None:
    dm = BijieDataModule(root=str(bijie_root), tile_size=64)
    with pytest.warns(FutureWarning, match=r'preprocessing_config\(\) is deprecated.*use the `preprocessing`'):
        old = dm.preprocessing_config()
    assert old == dm.preprocessing.to_dict()
    assert old['bands'] == ['red', 'green', 'blue'] and old['tile_size'] == 64 and len(old['mean']) == 3
    cached = CachedFeatureDataModule(datamodule=dm, cache_dir=str(tmp_path / 'cache'))
    with pytest.warns(FutureWarning, match=r'CachedFeatureDataModule\.preprocessing_config\(\) is deprecated'):
        assert cached.preprocessing_config() == old
