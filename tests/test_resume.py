"""Training a team can trust: last.ckpt is the last epoch, and a run stopped by SIGTERM and resumed with the same
command ends with exactly the weights of an uninterrupted run (data order, augmentation, RNG streams, optimizer,
scheduler, best-model tracking), through the real command line in subprocesses."""

from __future__ import annotations

import csv
import signal
import subprocess
import time
from pathlib import Path

import cli_process
import pytest
import torch

from sam_cffnet.datasets.demo import make_demo_bijie

#: HPCL-Net's demo recipe shrunk: random hyper-pixel sampling, EMA, queues, augmentation and shuffling all consume
#: random streams, so any stream that a resume does not continue exactly changes the final weights.
TINY_HPCL = [
    '--data.init_args.num_landslide', '4', '--data.init_args.num_non_landslide', '4',
    '--data.init_args.tile_size', '64', '--data.init_args.batch_size', '2', '--data.init_args.augment', 'true',
    '--data.init_args.split_ratios', '[0.75, 0.25, 0.0]',
    '--model.model.dem_channels', '[8, 8, 8, 8]', '--model.model.samples_per_class', '4',
    '--model.model.queue_size', '8', '--model.num_figure_tiles', '0',
    '--trainer.enable_progress_bar', 'false', '--trainer.enable_model_summary', 'false',
    '--trainer.callbacks', '[]',
]  # fmt: skip


@pytest.fixture(scope='module')
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp('demo') / 'bijie'
    make_demo_bijie(root, num_landslide=4, num_non_landslide=4, size_range=(64, 80))
    return root


def _command(root: Path, epochs: int, *extra: str) -> list[str]:
    """The ``fit`` command line (after ``python -m sam_cffnet``)."""
    return ['fit', '--config', 'hpcl_demo.yaml', '--data.init_args.root', str(root), *TINY_HPCL,
            '--trainer.max_epochs', str(epochs), '--ckpt_path', 'last', *extra]  # fmt: skip


def _env() -> dict[str, str]:
    return cli_process.user_env(OMP_NUM_THREADS='1', PYTHONHASHSEED='0')


def _last(run_dir: Path) -> Path:
    found = sorted(run_dir.glob('runs/hpcl_demo/version_*/checkpoints/last.ckpt'))
    assert found, f'no last.ckpt under {run_dir}'
    return found[-1]


def _epoch(path: Path) -> int:
    return int(torch.load(path, map_location='cpu', weights_only=True)['epoch'])


def test_stopped_and_resumed_run_ends_with_the_uninterrupted_weights(demo_root: Path, tmp_path: Path) -> None:
    epochs = 5
    whole, split = tmp_path / 'whole', tmp_path / 'split'
    whole.mkdir(), split.mkdir()
    run = cli_process.run(_command(demo_root, epochs), cwd=whole, env=_env(), timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]

    # the same command, stopped by SIGTERM (as a scheduler does) once two epochs are complete (a fresh interpreter:
    # the signal is what is tested)
    proc = subprocess.Popen([*cli_process.PYTHON_M, *_command(demo_root, epochs)], cwd=split, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        found = list(split.glob('runs/hpcl_demo/version_*/checkpoints/last.ckpt'))
        if found and _epoch(found[0]) >= 1:
            proc.send_signal(signal.SIGTERM)
            break
        time.sleep(0.05)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 143, stderr[-3000:]
    assert 'stopped by SIGTERM' in stderr and '--ckpt_path last' in stderr
    stopped_at = _epoch(_last(split))
    assert 1 <= stopped_at < epochs - 1  # really interrupted: the rest of the run is still to do

    # ... and rerun unchanged: it continues from last.ckpt in the same version folder
    resumed = cli_process.run(_command(demo_root, epochs), cwd=split, env=_env(), timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert 'resuming from' in resumed.stderr + resumed.stdout
    assert len(list(split.glob('runs/hpcl_demo/version_*'))) == 1  # same logs and checkpoints folder

    a = torch.load(_last(whole), map_location='cpu', weights_only=True)
    b = torch.load(_last(split), map_location='cpu', weights_only=True)
    assert a['epoch'] == b['epoch'] == epochs - 1 and a['global_step'] == b['global_step']
    assert a['state_dict'].keys() == b['state_dict'].keys()
    diff = max((a['state_dict'][k].double() - b['state_dict'][k].double()).abs().max().item()
               for k in a['state_dict'] if a['state_dict'][k].is_floating_point())  # fmt: skip
    assert diff == 0.0, f'max |weight difference| {diff}'
    for k in a['state_dict']:  # integer buffers too (queue pointers, BatchNorm counters)
        assert torch.equal(a['state_dict'][k], b['state_dict'][k]), k
    ta, tb = a['optimizer_states'][0]['state'], b['optimizer_states'][0]['state']
    assert all(torch.equal(ta[i]['exp_avg'], tb[i]['exp_avg']) for i in ta)
    assert a['lr_schedulers'] == b['lr_schedulers']
    best = next(v for k, v in a['callbacks'].items() if k.startswith('ModelCheckpoint'))
    best_b = next(v for k, v in b['callbacks'].items() if k.startswith('ModelCheckpoint'))
    assert best['best_model_path'] and best['best_model_score'] == best_b['best_model_score']
    assert Path(best['best_model_path']).name == Path(best_b['best_model_path']).name
    # the bookkeeping of the epoch last.ckpt ends is in it: its current score is that epoch's logged val IoU
    rows = list(csv.DictReader(open(next(whole.glob('runs/hpcl_demo_csv/version_*/metrics.csv')))))
    ious = [float(r['val_landslide_iou']) for r in rows if r.get('val_landslide_iou')]
    assert len(ious) == epochs and float(best['current_score']) == pytest.approx(ious[-1], abs=1e-6)
    assert best['current_score'] == best_b['current_score']
    # the resumed run chose and pruned the best checkpoints as the uninterrupted one did (no leftover best files)
    assert sorted(p.name for p in _last(whole).parent.glob('best-*.ckpt')) == sorted(
        p.name for p in _last(split).parent.glob('best-*.ckpt')
    )


def test_last_ckpt_is_the_last_epoch_even_when_the_best_is_earlier(demo_root: Path, tmp_path: Path) -> None:
    """Monitoring ``epoch`` in 'min' mode keeps the best checkpoint at epoch 0 whatever the training does; Lightning
    2.6's own ``save_last`` would then leave last.ckpt at epoch 0 too (it only refreshes it with a new best)."""
    cmd = _command(demo_root, 3, '--checkpoint.monitor', 'epoch', '--checkpoint.mode', 'min')
    run = cli_process.run(cmd, cwd=tmp_path, env=_env(), timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    last = torch.load(_last(tmp_path), map_location='cpu', weights_only=True)
    assert last['epoch'] == 2 and last['global_step'] == 3 * 3  # 6 training chips / batch 2 = 3 steps per epoch
    best = next(v for k, v in last['callbacks'].items() if k.startswith('ModelCheckpoint'))
    assert 'epoch000' in Path(best['best_model_path']).name
