"""The suite's command-line runs fork a preloaded interpreter (``tests/cli_process.py``); each must give what a fresh
``python -m sam_cffnet`` gives: the same exit status, the same messages and the same weights, bit for bit."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import cli_process
import pytest
import torch
from test_resume_duplicates import TINY

from sam_cffnet.datasets.demo import make_demo_bijie


def _both(args: list[str], tmp_path: Path, env: dict[str, str]) -> dict[str, subprocess.CompletedProcess[str]]:
    runs = {}
    for way in ('fresh', 'forked'):
        cwd = tmp_path / way
        cwd.mkdir()
        if way == 'fresh':
            runs[way] = subprocess.run([*cli_process.PYTHON_M, *args], capture_output=True, text=True, cwd=cwd, env=env,
                                       timeout=600)  # fmt: skip
        else:
            runs[way] = cli_process.run(args, cwd=cwd, env=env, timeout=600)
    return runs


@pytest.mark.skipif(not hasattr(os, 'fork'), reason='the zygote needs fork()')
def test_a_forked_run_trains_the_same_weights_as_a_fresh_interpreter(tmp_path: Path) -> None:
    """One thread, as the suite runs: the fork takes its thread count from OMP_NUM_THREADS per run, as a fresh
    interpreter does at start (torch was imported before the run's environment existed)."""
    root = tmp_path / 'bijie'
    make_demo_bijie(root, num_landslide=4, num_non_landslide=2, size_range=(32, 40))
    env = cli_process.user_env(OMP_NUM_THREADS='1')
    args = ['fit', '--config', 'demo.yaml', '--data.init_args.root', str(root), *TINY, '--trainer.max_epochs', '1']
    runs = _both(args, tmp_path, env)
    weights = {}
    for way, run in runs.items():
        assert run.returncode == 0, run.stderr[-3000:]
        (last,) = (tmp_path / way).glob('runs/demo/version_*/checkpoints/last.ckpt')
        weights[way] = torch.load(last, map_location='cpu', weights_only=True)['state_dict']
    assert weights['fresh'].keys() == weights['forked'].keys()
    for key, value in weights['fresh'].items():
        assert torch.equal(value, weights['forked'][key]), key


@pytest.mark.skipif(not hasattr(os, 'fork'), reason='the zygote needs fork()')
@pytest.mark.parametrize(
    ('args', 'traceback', 'status'),
    [(['map', '--inptu', 'x.tif'], '', 2), (['map', '--checkpoint', 'missing.ckpt', '--input', 'x.tif'], '1', 1)],
    ids=['user-error', 'traceback'],
)
def test_a_forked_run_exits_and_reports_as_a_fresh_interpreter(
    args: list[str], traceback: str, status: int, tmp_path: Path
) -> None:
    """A user's mistake: exit 2 and the same one line; with SAM_CFFNET_TRACEBACK=1 the uncaught error ends the run
    as the interpreter ends it (exit 1, the traceback on stderr)."""
    env = {**os.environ, 'SAM_CFFNET_TRACEBACK': traceback}
    runs = _both(args, tmp_path, env)
    assert runs['fresh'].returncode == runs['forked'].returncode == status, runs['forked'].stderr[-3000:]
    assert runs['fresh'].stdout == runs['forked'].stdout
    fresh, forked = (run.stderr.replace(str(tmp_path / way), '<cwd>') for way, run in runs.items())
    if traceback:  # the same error at the end; the frames above it differ (runpy's, not the interpreter's start)
        assert fresh.startswith('Traceback') and forked.startswith('Traceback'), forked[-3000:]
        assert fresh.strip().splitlines()[-1] == forked.strip().splitlines()[-1]
    else:
        assert fresh == forked
