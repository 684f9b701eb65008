"""Shared test set-up: headless matplotlib, deterministic seeds, paths to the real samples."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from types import ModuleType

import matplotlib
import pytest
import torch

matplotlib.use('agg')
os.environ.setdefault('PYTHONHASHSEED', '0')
# Tiny test models gain nothing from threads and lose a lot on a shared 2-core machine; set at import so that
# module- and session-scoped fixtures run single-threaded too.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
#: Real samples shipped beside the checkout (absent on some machines: tests skip).
REAL_DATA = (REPO / '..' / 'shared' / 'data' / 'real').resolve()


@pytest.fixture(autouse=True)
def _seed_and_threads() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)


def model_flags(args: dict[str, object]) -> list[str]:
    """Command-line overrides of the model's options: ``--model.model.<key> <JSON value>`` for each entry."""
    flags: list[str] = []
    for key, value in args.items():
        flags += [f'--model.model.{key}', value if isinstance(value, str) else json.dumps(value)]
    return flags


def load_fake_data_generator(name: str) -> ModuleType:
    """Import ``tests/data/<name>/data.py`` (the fake-data generator of one dataset)."""

    spec = importlib.util.spec_from_file_location(f'fake_{name}', REPO / 'tests' / 'data' / name / 'data.py')
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='session')
def fake_roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny fake datasets in the exact real layouts, one root per dataset config name."""
    base = tmp_path_factory.mktemp('fake_data')
    return {
        'bijie': load_fake_data_generator('bijie').make_bijie(base / 'bijie'),
        'landslide4sense': load_fake_data_generator('landslide4sense').make_l4s(base / 'l4s', test_masks=True),
        'gvlm': load_fake_data_generator('gvlm').make_gvlm(base / 'gvlm'),
        'reference_tiles': load_fake_data_generator('reference_tiles').make_reference_tiles(base / 'ref'),
    }


@pytest.fixture(scope='session')
def bijie_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return load_fake_data_generator('bijie').make_bijie(tmp_path_factory.mktemp('bijie'))


@pytest.fixture(scope='session')
def l4s_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return load_fake_data_generator('landslide4sense').make_l4s(tmp_path_factory.mktemp('l4s'))


@pytest.fixture(scope='session')
def gvlm_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return load_fake_data_generator('gvlm').make_gvlm(tmp_path_factory.mktemp('gvlm'))


@pytest.fixture(scope='session')
def reference_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return load_fake_data_generator('reference_tiles').make_reference_tiles(tmp_path_factory.mktemp('reference'))


@pytest.fixture(scope='session')
def generators() -> dict[str, ModuleType]:
    """The fake-data generator modules, by dataset name."""
    return {name: load_fake_data_generator(name) for name in ('bijie', 'landslide4sense', 'gvlm', 'reference_tiles')}
