"""The feature cache from the command line: ``extract-features`` writes it, ``fit`` on ``CachedFeatureDataModule``
finds it (the key holds only what changes the features, not the wrapper's own settings)."""

from __future__ import annotations

from pathlib import Path

from test_user_errors import run_cli

from sam_cffnet.features import FeatureCache

QUIET = ['--trainer.enable_progress_bar', 'false', '--trainer.enable_model_summary', 'false']
SHORT = ['--trainer.max_epochs', '1', '--trainer.limit_train_batches', '2', '--trainer.limit_val_batches', '2']


def test_extract_features_then_fit_from_the_cache(tmp_path: Path) -> None:
    """The documented sequence, with the shipped recipes as they are: extract with demo.yaml, then fit with
    demo_cached.yaml (``build: false``) uses that cache; with ``build: true`` nothing is extracted again."""
    extract = run_cli('extract-features', '--config', 'demo.yaml', '--output', 'feature_cache/demo', cwd=tmp_path)
    assert extract.returncode == 0, extract.stderr[-3000:]
    made = sorted(p.name for p in (tmp_path / 'feature_cache' / 'demo').iterdir())
    assert [name.split('-')[0] for name in made] == ['train', 'val'], made
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / 'feature_cache' / 'demo').rglob('*')}

    fit = run_cli('fit', '--config', 'demo_cached.yaml', *SHORT, *QUIET, cwd=tmp_path)
    assert fit.returncode == 0, fit.stderr[-3000:]
    assert list((tmp_path / 'runs' / 'demo_cached').glob('version_0/checkpoints/best-*.ckpt'))
    fit = run_cli('fit', '--config', 'demo_cached.yaml', '--data.init_args.build', 'true',
                  '--trainer.default_root_dir', 'runs/again', *SHORT, *QUIET, cwd=tmp_path)  # fmt: skip
    assert fit.returncode == 0, fit.stderr[-3000:]
    assert 'SAM features' not in fit.stderr + fit.stdout  # no extraction
    assert sorted(p.name for p in (tmp_path / 'feature_cache' / 'demo').iterdir()) == made  # no second copy
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / 'feature_cache' / 'demo').rglob('*')} == stamps
    key = FeatureCache(tmp_path / 'feature_cache' / 'demo' / made[0]).key['data']['split_config']
    assert 'build' not in key and 'cache_dir' not in key and 'datamodule' not in key
    assert key['num_landslide'] == 24 and key['split_ratios'] == [0.6, 0.2, 0.2]
