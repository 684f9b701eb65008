"""docs/mapping.md's Python lines, run as written (on a generated scene and the tiny checkpoint)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from .conftest import REPO, random_rgb, write_geotiff

PAGE = REPO / 'docs' / 'mapping.md'
_BLOCK = re.compile(r'^```python\n(.*?)^```', re.MULTILINE | re.DOTALL)


@pytest.mark.filterwarnings('ignore:.*RANDOM weights')
def test_mapping_page_python_blocks_run_as_written(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The page passes what ``load_mapping_model`` returns to ``map_scene`` and ``map_scenes``: that must work."""
    blocks = _BLOCK.findall(PAGE.read_text())
    assert blocks, f'{PAGE} has no python block'
    shutil.copy(checkpoint, tmp_path / 'best.ckpt')
    write_geotiff(tmp_path / 'scene.tif', random_rgb(64, 80))
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    for i, code in enumerate(blocks):
        try:
            exec(compile(code, f'{PAGE.name} python block {i}', 'exec'), namespace)
        except Exception as err:
            raise AssertionError(f'{PAGE.name} python block {i} failed: {err!r}\n{code}') from err
    printed = capsys.readouterr().out
    assert 'km2 of landslides in ' + str(tmp_path / 'map.tif') in printed
    assert str(tmp_path / 'maps' / 'scene.tif') in printed
    assert (tmp_path / 'map.tif').exists() and (tmp_path / 'maps' / 'scene.gpkg').exists()
