"""The layering contract (``[tool.importlinter]`` in pyproject.toml): kept by the package, and broken as soon as an
upward import, a forbidden dependency or an import cycle is added."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).parent / 'lint-imports'


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    """Run import-linter on the ``sam_cffnet`` package found under ``root`` with the project's contracts."""
    env = {**os.environ, 'PYTHONPATH': str(root)}
    command = [str(LINT), '--config', str(root / 'pyproject.toml'), '--no-cache']
    return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope='module')
def copy_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp('layering')
    shutil.copy(REPO / 'pyproject.toml', root / 'pyproject.toml')
    return root


def _with_change(copy_root: Path, name: str, module: str, line: str) -> Path:
    """A copy of the package under ``copy_root/name`` with ``line`` appended to ``module`` (a path in the package)."""
    root = copy_root / name
    shutil.copytree(REPO / 'sam_cffnet', root / 'sam_cffnet', ignore=shutil.ignore_patterns('__pycache__'))
    shutil.copy(copy_root / 'pyproject.toml', root / 'pyproject.toml')
    target = root / 'sam_cffnet' / module
    target.write_text(target.read_text() + f'\n{line}\n')
    return root


def test_the_package_keeps_its_contracts() -> None:
    run = _lint(REPO)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert 'BROKEN' not in run.stdout and '0 broken' in run.stdout


@pytest.mark.parametrize(
    ('module', 'line', 'contract'),
    [
        ('datasets/utils.py', 'from ..tasks import segmentation  # noqa', 'layers'),
        ('models/base.py', 'import lightning  # noqa', 'models: plain nn.Modules'),
        ('datamodules/base.py', 'from .. import models  # noqa', 'datasets and datamodules: no model code'),
        ('preprocessing.py', 'import torchgeo  # noqa', 'bottom layer'),
        ('models/registry.py', 'from . import sam_cffnet  # noqa', 'no import cycles'),
    ],
    ids=['upward', 'lightning-in-models', 'models-in-datamodules', 'torchgeo-at-the-bottom', 'cycle'],
)
def test_a_forbidden_import_breaks_the_contract(copy_root: Path, module: str, line: str, contract: str) -> None:
    root = _with_change(copy_root, module.replace('/', '_'), module, line)
    run = _lint(root)
    assert run.returncode != 0, run.stdout[-3000:]
    broken = run.stdout.split('Broken contracts', 1)[-1]
    assert contract in broken, run.stdout[-3000:]


def test_importing_the_datamodules_loads_no_model_code() -> None:
    """What the contracts say statically, checked at run time: another Lightning project can use the datamodules
    without segment-anything or our models being imported."""
    code = (
        'import sys, sam_cffnet.datamodules; '
        "bad = [m for m in ('sam_cffnet.models', 'segment_anything', 'sam_cffnet.tasks') if m in sys.modules]; "
        'print(bad); sys.exit(1 if bad else 0)'
    )
    run = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr[-2000:]
