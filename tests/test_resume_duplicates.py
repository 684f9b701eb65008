"""A run killed between writing a new best checkpoint and ``last.ckpt`` and resumed with ``--ckpt_path last`` keeps one
file per best epoch (no ``best-...-v1.ckpt`` beside ``best-....ckpt``), and checkpoint saves print no
"`weights_only` was not set" line: through the real command line in subprocesses."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import cli_process
import pytest
import torch

from sam_cffnet.datasets.demo import make_demo_bijie

#: The demo recipe shrunk to seconds; monitoring ``epoch`` in 'max' mode makes every epoch a new best.
TINY = [
    '--data.init_args.num_landslide', '4', '--data.init_args.num_non_landslide', '2',
    '--data.init_args.tile_size', '32', '--data.init_args.batch_size', '2', '--data.init_args.num_workers', '0',
    '--data.init_args.split_ratios', '[0.5, 0.5, 0.0]', '--model.num_figure_tiles', '0',
    '--trainer.enable_progress_bar', 'false', '--trainer.enable_model_summary', 'false',
    '--trainer.callbacks', '[]', '--checkpoint.monitor', 'epoch', '--checkpoint.mode', 'max',
]  # fmt: skip


@pytest.fixture(scope='module')
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp('demo') / 'bijie'
    make_demo_bijie(root, num_landslide=4, num_non_landslide=2, size_range=(32, 40))
    return root


def _fit(root: Path, cwd: Path, epochs: int) -> subprocess.CompletedProcess[str]:
    cmd = ['fit', '--config', 'demo.yaml', '--data.init_args.root', str(root), *TINY, '--trainer.max_epochs',
           str(epochs), '--ckpt_path', 'last']  # fmt: skip
    env = cli_process.user_env(OMP_NUM_THREADS='1')
    run = cli_process.run(cmd, cwd=cwd, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def _folder(cwd: Path) -> Path:
    found = sorted(cwd.glob('runs/demo/version_*/checkpoints'))
    assert len(found) == 1, found
    return found[0]


def test_resume_after_a_kill_between_the_best_and_the_last_write_leaves_no_duplicate(
    demo_root: Path, tmp_path: Path
) -> None:
    _fit(demo_root, tmp_path, 1)
    folder = _folder(tmp_path)
    epoch0_last = tmp_path / 'last_epoch0.ckpt'
    shutil.copy(folder / 'last.ckpt', epoch0_last)
    _fit(demo_root, tmp_path, 2)  # epoch 1: best-epoch001 written (best-epoch000 removed), then last.ckpt
    assert [p.name[:14] for p in folder.glob('best-*.ckpt')] == ['best-epoch001-']
    # a kill after the best write of epoch 1 and before its last.ckpt: last.ckpt still ends epoch 0
    shutil.copy(epoch0_last, folder / 'last.ckpt')
    resumed = _fit(demo_root, tmp_path, 2)
    assert 'resuming from' in resumed.stderr + resumed.stdout
    names = sorted(p.name for p in folder.glob('*.ckpt'))
    assert not [n for n in names if '-v1' in n], names
    best = [n for n in names if n.startswith('best-')]
    assert len(best) == 1 and best[0].startswith('best-epoch001'), names
    last = torch.load(folder / 'last.ckpt', map_location='cpu', weights_only=True)
    state = next(v for k, v in last['callbacks'].items() if k.startswith('ModelCheckpoint'))
    assert Path(state['best_model_path']).name == best[0]


def test_checkpoint_saves_print_no_weights_only_line(demo_root: Path, tmp_path: Path) -> None:
    """Lightning logs "`weights_only` was not set, defaulting to `False`" for every save that does not say, a tip
    for its cloud logger and "Found N module(s) in eval mode" (the frozen encoder, on purpose) on every run."""
    run = _fit(demo_root, tmp_path, 2)
    assert len(list(_folder(tmp_path).glob('*.ckpt'))) == 2  # a best and last.ckpt were written
    output = run.stderr + run.stdout
    for noise in ('was not set, defaulting', 'litlogger', 'in eval mode at the start', "LightningCLI's args"):
        assert noise not in output, (noise, output[-3000:])
