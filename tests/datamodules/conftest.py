"""Fixtures for the datamodule tests: fake data written by ``tests/data/<name>/data.py`` into temporary folders."""

import importlib.util
from pathlib import Path
from types import ModuleType

import matplotlib
import pytest

matplotlib.use('Agg')

DATA = Path(__file__).resolve().parents[1] / 'data'
REAL = Path(__file__).resolve().parents[2] / '..' / 'shared' / 'data' / 'real'


def load_generator(name: str) -> ModuleType:
    """Import ``tests/data/<name>/data.py`` as a module."""
    spec = importlib.util.spec_from_file_location(f'fake_{name}_data', DATA / name / 'data.py')
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='session')
def bijie_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return load_generator('bijie').make_bijie(tmp_path_factory.mktemp('bijie'))


@pytest.fixture(scope='session')
def l4s_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return load_generator('landslide4sense').make_l4s(tmp_path_factory.mktemp('l4s'))


@pytest.fixture(scope='session')
def gvlm_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return load_generator('gvlm').make_gvlm(tmp_path_factory.mktemp('gvlm'))


@pytest.fixture(scope='session')
def reference_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return load_generator('reference_tiles').make_reference_tiles(tmp_path_factory.mktemp('reference'))


@pytest.fixture(scope='session')
def generators() -> dict[str, ModuleType]:
    """The fake-data generator modules, by dataset name."""
    return {name: load_generator(name) for name in ('bijie', 'landslide4sense', 'gvlm', 'reference_tiles')}
