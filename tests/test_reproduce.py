"""``python -m sam_cffnet reproduce``: the dry run on demo data (CPU), the table, resuming, bad input."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import cli_process
import pytest

from sam_cffnet import cli, reproduce
from sam_cffnet.errors import ConfigError, MissingFileError, OutputExistsError

QUIET = ['--trainer.enable_progress_bar', 'false', '--trainer.enable_model_summary', 'false']
#: What ``python -m sam_cffnet reproduce`` hands :func:`reproduce.main` (its runs and option checks in-process).
AS_THE_CLI = {'run_cli': cli.main, 'check_cli': cli.parse_config}


def table(out: Path) -> list[dict[str, str]]:
    with (out / 'reproduce.csv').open(newline='') as f:
        return list(csv.DictReader(f))


def fit_val_metrics(run_dir: Path) -> dict[int, dict[str, float]]:
    """Per epoch, the validation metrics the fit logged (CSV logs of every start and resume)."""
    out: dict[int, dict[str, float]] = {}
    for path in sorted((run_dir / 'logs' / 'csv').glob('version_*/metrics.csv')):
        for row in csv.DictReader(path.open(newline='')):
            if row.get('val_landslide_iou'):
                out[int(row['epoch'])] = {k: float(v) for k, v in row.items() if k.startswith('val_') and v}
    return out


def test_dry_run_trains_evaluates_and_writes_the_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / 'repro'
    assert reproduce.main(['--dry-run', '--output', str(out), *QUIET], **AS_THE_CLI) == 0
    printed = capsys.readouterr().out
    assert 'DRY RUN' in printed and '| sam_cffnet_gvlm | val (selection) |' in printed
    rows = table(out)
    assert [(r['run'], r['split']) for r in rows] == [
        ('sam_cffnet_bijie', 'val (selection)'),
        ('sam_cffnet_landslide4sense', 'val (selection)'),
        ('sam_cffnet_landslide4sense', 'test'),
        ('sam_cffnet_gvlm', 'val (selection)'),
    ]
    paper = {r['run']: r['paper_landslide_iou_pct'] for r in rows if r['split'] != 'test'}
    assert paper == {'sam_cffnet_bijie': '77.13', 'sam_cffnet_landslide4sense': '55.26', 'sam_cffnet_gvlm': '73.87'}
    gvlm = rows[-1]
    assert (gvlm['paper_miou_pct'], gvlm['paper_macro_f1_pct']) == ('83.65', '90.79')
    assert rows[0]['paper_miou_pct'] == '' and rows[2]['paper_landslide_iou_pct'] == ''  # no paper value there
    for row in rows:
        assert row['dry_run'] == 'True' and row['epochs'] == '1' and row['best_epoch'] == '1'
        if row['paper_landslide_iou_pct']:
            delta = float(row['landslide_iou_pct']) - float(row['paper_landslide_iou_pct'])
            assert float(row['delta_landslide_iou_pct']) == pytest.approx(delta, abs=1e-3)
    # the table's validation numbers are those of the best epoch during fit (same weights, same split)
    for row in (r for r in rows if r['split'] != 'test'):
        logged = fit_val_metrics(out / row['run'])[int(row['best_epoch']) - 1]
        for name in ('landslide_iou', 'miou', 'macro_f1', 'landslide_f1', 'macro_precision', 'macro_recall'):
            assert float(row[f'{name}_pct']) == pytest.approx(100 * logged[f'val_{name}'], abs=1e-3), (row['run'], name)
        assert 0 <= float(row['landslide_iou_pct']) <= 100
    md = (out / 'reproduce.md').read_text()
    assert '| run | split | epochs | best epoch | landslide IoU | paper |' in md and 'DRY RUN' in md
    assert '**landslide IoU**: IoU of the landslide class' in md and '**macro F1 / P / R**: mean over the two' in md
    for run in ('sam_cffnet_bijie', 'sam_cffnet_landslide4sense', 'sam_cffnet_gvlm'):
        assert (out / run / 'checkpoints' / 'last.ckpt').is_file() and (out / run / 'result.json').is_file()

    # the same command again: every run is done, nothing is trained, the table is the same
    before = (out / 'reproduce.csv').read_text()
    assert reproduce.main(['--dry-run', '--output', str(out), *QUIET], **AS_THE_CLI) == 0
    assert printed.count('fit reference') == 3 and capsys.readouterr().out.count('skipped') == 3
    assert (out / 'reproduce.csv').read_text() == before

    # an interrupted run (no result yet) resumes from its last.ckpt: only the missing epoch is trained
    (out / 'sam_cffnet_gvlm' / 'result.json').unlink()
    assert reproduce.main(['--dry-run', '--output', str(out), '--trainer.max_epochs', '2', *QUIET],
                          **AS_THE_CLI) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert 'sam_cffnet_gvlm: fit reference/sam_cffnet_gvlm.yaml' in printed and 'resuming from its last.ckpt' in printed
    gvlm = next(r for r in table(out) if r['run'] == 'sam_cffnet_gvlm')
    assert gvlm['epochs'] == '2'
    epochs = fit_val_metrics(out / 'sam_cffnet_gvlm')
    assert sorted(epochs) == [0, 1]  # epoch 0 from the first start, epoch 1 from the resume
    assert len(list((out / 'sam_cffnet_gvlm' / 'logs' / 'csv').glob('version_*'))) == 2


@pytest.mark.slow
def test_command_line_dry_run_in_subprocesses(tmp_path: Path) -> None:
    """``python -m sam_cffnet reproduce`` (the TOOLS entry), each training command in a subprocess (~80 s)."""
    out = tmp_path / 'repro'
    env = {**os.environ, 'PYTHONPATH': str(Path(__file__).resolve().parents[1]), 'OMP_NUM_THREADS': '1'}
    proc = subprocess.run(
        [sys.executable, '-m', 'sam_cffnet', 'reproduce', '--dry-run', '--only', 'sam_cffnet_bijie', '--output',
         str(out), *QUIET],
        capture_output=True, text=True, env=env, timeout=900, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert '| sam_cffnet_bijie | val (selection) | 1 | 1 |' in proc.stdout
    assert [r['run'] for r in table(out)] == ['sam_cffnet_bijie']
    assert 'reproduce' in cli.TOOLS and cli.TOOLS['reproduce'][1] is cli._cmd_reproduce


DDP_SCRIPT = """
import sys
from sam_cffnet import cli, reproduce
sys.exit(reproduce.main(sys.argv[1:], run_cli=cli.main))
"""


@pytest.mark.slow
def test_two_process_ddp_in_process_and_in_subprocesses_agree(tmp_path: Path) -> None:
    """DDP (gloo, 2 CPU processes): in-process, Lightning re-launches the reproduce command itself for rank 1, which
    replays the same runs; in subprocesses, each ``fit``/``validate`` re-launches itself. Same table (~4 min)."""
    script = tmp_path / 'reproduce_in_process.py'
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, 'PYTHONPATH': str(Path(__file__).resolve().parents[1]), 'OMP_NUM_THREADS': '1'}
    common = ['reproduce', '--dry-run', '--only', 'sam_cffnet_gvlm', '--trainer.devices', '2', '--trainer.strategy',
              'ddp', *QUIET]  # fmt: skip
    tables = []
    for name, command in (('in_process', [str(script), *common[1:]]), ('subprocess', ['-m', 'sam_cffnet', *common])):
        out = tmp_path / name
        proc = subprocess.run([sys.executable, *command, '--output', str(out)], capture_output=True, text=True,
                              env=env, timeout=900, cwd=tmp_path)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert 'MEMBER: 2/2' in proc.stderr and proc.stdout.count('| sam_cffnet_gvlm |') == 1
        tables.append([{k: v for k, v in r.items() if k != 'checkpoint'} for r in table(out)])
    assert tables[0] == tables[1]


def test_bad_input_is_refused_before_any_work(tmp_path: Path) -> None:
    sam = tmp_path / 'sam.pth'
    sam.write_bytes(b'x')
    data = tmp_path / 'data'
    data.mkdir()
    out = tmp_path / 'out'
    with pytest.raises(MissingFileError, match=r'--gvlm: .*nowhere does not exist'):
        cli.main(['reproduce', '--gvlm', str(tmp_path / 'nowhere'), '--sam-checkpoint', str(sam), '--output', str(out)])
    with pytest.raises(MissingFileError, match='--sam-checkpoint'):
        cli.main(['reproduce', '--gvlm', str(data), '--sam-checkpoint', str(tmp_path / 'no.pth'), '--output', str(out)])
    with pytest.raises(ConfigError, match='--sam-checkpoint is required'):
        cli.main(['reproduce', '--gvlm', str(data), '--output', str(out)])
    with pytest.raises(ConfigError, match='nothing to run'):
        cli.main(['reproduce', '--sam-checkpoint', str(sam), '--output', str(out)])
    with pytest.raises(ConfigError, match=r'unknown option --trainr\.devices'):
        cli.main(['reproduce', '--gvlm', str(data), '--sam-checkpoint', str(sam), '--trainr.devices', '2'])
    with pytest.raises(ConfigError, match=r'sets --trainer\.logger itself'):
        cli.main(['reproduce', '--gvlm', str(data), '--sam-checkpoint', str(sam), '--trainer.logger', 'false'])
    with pytest.raises(ConfigError, match='--only: unknown runs'):
        cli.main(['reproduce', '--gvlm', str(data), '--sam-checkpoint', str(sam), '--only', 'gvlm'])
    assert not out.exists()
    foreign = tmp_path / 'foreign'
    foreign.mkdir()
    (foreign / 'notes.txt').write_text('mine')
    with pytest.raises(OutputExistsError, match='not a reproduce output'):
        cli.main(['reproduce', '--gvlm', str(data), '--sam-checkpoint', str(sam), '--output', str(foreign)])
    assert sorted(p.name for p in foreign.iterdir()) == ['notes.txt']


def test_a_run_folder_is_not_reused_for_other_data(tmp_path: Path) -> None:
    out = tmp_path / 'out'
    (out / 'sam_cffnet_gvlm').mkdir(parents=True)
    (out / reproduce.MARKER).write_text('{}')
    (out / 'sam_cffnet_gvlm' / 'settings.json').write_text(
        '{"recipe": "reference/sam_cffnet_gvlm.yaml", "root": "/elsewhere", "sam_checkpoint": null, "dry_run": true}'
    )
    with pytest.raises(OutputExistsError, match=r'sam_cffnet_gvlm holds a run with other settings \(root'):
        reproduce.main(['--dry-run', '--only', 'sam_cffnet_gvlm', '--output', str(out)], run_cli=cli.main)
    assert not (out / 'sam_cffnet_gvlm' / 'checkpoints').exists()


def test_command_line_reports_bad_input_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, 'PYTHONPATH': str(Path(__file__).resolve().parents[1])}
    proc = cli_process.run(['reproduce', '--bijie', str(tmp_path / 'missing'), '--dry-run', '--output',
                            str(tmp_path / 'out')], cwd=tmp_path, env=env, timeout=300)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.startswith('sam_cffnet: error: --bijie: ') and 'Traceback' not in proc.stderr
    assert not (tmp_path / 'out' / 'sam_cffnet_bijie').exists()


def test_an_option_typo_is_refused_before_any_run(tmp_path: Path) -> None:
    """``--trainer.max_epoch 2`` (for max_epochs): one line naming the run and the option, exit 2, nothing written
    (no demo data, no run folder), because every option of every run is parsed before the first run starts."""
    from test_user_errors import assert_user_error, run_cli

    out = tmp_path / 'out'
    proc = run_cli('reproduce', '--dry-run', '--output', str(out), '--trainer.max_epoch', '2', *QUIET, cwd=tmp_path)
    line = assert_user_error(proc, 'run sam_cffnet_bijie', '--trainer.max_epoch')
    assert 'usage:' not in proc.stderr and 'usage:' not in proc.stdout
    assert len(proc.stderr.strip().splitlines()) <= 2, proc.stderr  # the error and the traceback hint
    assert not out.exists(), line
    # a wrong value of a valid option, on the last run only (--only keeps the check per run): also one line (the
    # same entry, in-process)
    with pytest.raises(ConfigError) as info:
        cli.main(['reproduce', '--dry-run', '--only', 'sam_cffnet_gvlm', '--output', str(out),
                  '--trainer.max_epochs', 'two', *QUIET])  # fmt: skip
    assert 'run sam_cffnet_gvlm' in str(info.value) and 'max_epochs' in str(info.value)
    assert '\n' not in str(info.value) and not out.exists()
