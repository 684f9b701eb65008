"""benchmarks/gpu.py runs end to end on the CPU (``--tiny``), with only the packages the GPU machine has."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: Runs benchmarks/gpu.py with the packages that the GPU machine lacks made unimportable (it has torch, Lightning,
#: timm, numpy; segment-anything and, for the map row, rasterio travel as wheels).
RUN_WITHOUT = """
import importlib.abc, importlib.machinery, runpy, sys
HIDDEN = {'segmentation_models_pytorch', 'torchgeo', 'kornia', 'jsonargparse', 'pyogrio', 'shapely', 'h5py'}

class Hide(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in HIDDEN:
            return importlib.machinery.ModuleSpec(name, self)
        return None

    def create_module(self, spec):
        raise ModuleNotFoundError(f'No module named {spec.name!r}', name=spec.name)

sys.meta_path.insert(0, Hide())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
"""


def test_gpu_benchmark_smoke_on_cpu(tmp_path: Path) -> None:
    out = tmp_path / 'rows.csv'
    script = str(REPO / 'benchmarks' / 'gpu.py')
    run = subprocess.run(
        [sys.executable, '-c', RUN_WITHOUT, script, '--tiny', '--device', 'cpu', '--csv', str(out)],
        capture_output=True, text=True, timeout=900, cwd=REPO,
        env={**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONWARNINGS': 'ignore'},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert 'segmentation_models_pytorch' not in run.stderr  # really run without the baselines' dependency
    rows = list(csv.DictReader(out.open()))
    groups = [r['group'] for r in rows]
    assert groups.count('encoder') == 3 and groups.count('train') == 2 and groups.count('map') == 1
    assert [r['precision'] for r in rows if r['group'] == 'encoder'] == ['fp32', 'bf16', 'bf16']
    for r in rows:
        assert float(r['per_second']) > 0 and float(r['flops_per_item']) > 0, r
    train = {r['name']: float(r['flops_per_item']) for r in rows if r['group'] == 'train'}
    assert train['vit_tiny head, feature cache'] < train['vit_tiny head, full encoder']  # the cache skips the ViT
    table = run.stdout
    assert '| row | batch | precision | attention | compile | items/s |' in table and '% of limit' in table
    assert 'map: map vit_tiny' in table
