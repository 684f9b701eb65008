"""The documentation site: it builds with warnings as errors, and the quick start's Python snippets run as written.

``mkdocs build --strict`` fails on a broken link or anchor, a page missing from the navigation, or an API name in
``docs/api/`` that no longer exists in the package. The quick start (``docs/quickstart.md``) promises that its
``python`` blocks run top to bottom; the test runs them, in order, in one namespace, in a fresh folder.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / 'docs' / 'quickstart.md'
_BLOCK = re.compile(r'^```python\n(.*?)^```', re.MULTILINE | re.DOTALL)


def python_blocks(path: Path) -> list[str]:
    """The ```python blocks of a Markdown page, in order."""
    return _BLOCK.findall(path.read_text())


def test_docs_build_strict(tmp_path: Path) -> None:
    """``mkdocs build --strict`` succeeds and writes every page of the navigation (plus the API reference)."""
    pytest.importorskip('mkdocs', reason='the docs extra is not installed (pip install -e .[docs])')
    pytest.importorskip('material', reason='mkdocs-material is not installed (pip install -e .[docs])')
    pytest.importorskip('mkdocstrings_handlers.python', reason='mkdocstrings-python is not installed')
    site = tmp_path / 'site'
    env = {**os.environ, 'NO_MKDOCS_2_WARNING': '1', 'PYTHONWARNINGS': 'ignore'}
    result = subprocess.run(
        [sys.executable, '-m', 'mkdocs', 'build', '--strict', '--site-dir', str(site)],
        cwd=REPO, capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    pages = sorted(p.relative_to(site).as_posix() for p in site.rglob('index.html'))
    for page in ('index.html', 'quickstart/index.html', 'install/index.html', 'api/mapping/index.html',
                 'api/preprocessing/index.html', 'api/datamodules/index.html', 'api/models/index.html',
                 'api/datasets/index.html', 'api/evaluation/index.html', 'evaluate/index.html',
                 'feature_cache/index.html'):  # fmt: skip
        assert page in pages, pages
    # the API pages hold the documented objects, with their docstrings rendered
    api = (site / 'api' / 'mapping' / 'index.html').read_text()
    assert 'map_scene' in api and 'Map one scene' in api
    evaluation = (site / 'api' / 'evaluation' / 'index.html').read_text()
    assert 'EvaluateParams' in evaluation and 'match_objects' in evaluation and 'Matching rule' in evaluation
    pre = (site / 'api' / 'preprocessing' / 'index.html').read_text()
    assert 'Preprocessing' in pre and ':class:' not in pre


def test_quickstart_snippets_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ```python block of docs/quickstart.md, executed in order in one namespace, in an empty folder."""
    blocks = python_blocks(QUICKSTART)
    assert len(blocks) >= 5, 'the quick start lost its snippets'
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {'__name__': '__quickstart__'}
    for i, code in enumerate(blocks, 1):
        try:
            exec(compile(code, f'{QUICKSTART.name} block {i}', 'exec'), namespace)
        except Exception as err:  # pragma: no cover - the message names the failing block
            raise AssertionError(f'docs/quickstart.md python block {i} failed: {err!r}\n{code}') from err
    # what the page says it produces
    assert (tmp_path / 'runs' / 'quickstart' / 'model.ckpt').is_file()
    assert (tmp_path / 'maps' / 'scene.tif').is_file() and (tmp_path / 'maps' / 'scene.gpkg').is_file()
    summary = namespace['summary']
    assert isinstance(summary, dict) and summary['crs'] and summary['landslide_area_km2'] is not None
    assert summary['quicklook'] and Path(summary['quicklook']).is_file()


def test_readme_feature_cache_recipe_is_the_shipped_one() -> None:
    """The README's cached-feature YAML is the data block of ``demo_cached.yaml`` (same modules, same settings)."""
    import yaml

    blocks = re.findall(r'^```yaml\n(.*?)^```', (REPO / 'README.md').read_text(), re.MULTILINE | re.DOTALL)
    readme = next(yaml.safe_load(b) for b in blocks if 'CachedFeatureDataModule' in b)
    shipped = yaml.safe_load((REPO / 'sam_cffnet' / 'configs' / 'demo_cached.yaml').read_text())
    assert readme['data'] == shipped['data']
