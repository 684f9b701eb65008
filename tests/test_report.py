"""The efficiency report: exact parameter counts and FLOPs against the reference spec, config handling, output."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from sam_cffnet.cli import main, parse_config
from sam_cffnet.models import build_model
from sam_cffnet.report import build_meta_model, format_csv, model_report, run_report

#: reference_sam_cffnet.md 3.9 / 3.10 (ViT-L, 256 px tile, batch 1).
REF_TRAINABLE = 4_258_723
REF_TOTAL = 312_536_995
SAM_NECK_PARAMS = 852_992  # never built here (the reference computes it and throws it away)
REF_ENCODER_GFLOPS = 2985.68
NECK_GFLOPS = 6.98
REF_DECODER_GFLOPS = 128.87


def cli_report(capsys: pytest.CaptureFixture[str], *configs: str, extra: tuple[str, ...] = ()) -> dict:
    """``python -m sam_cffnet report --config ... --csv -`` (the real command), its row parsed."""
    args = ['report', *[a for c in configs for a in ('--config', c)], '--csv', '-', *extra]
    assert main(args) == 0
    header, row = capsys.readouterr().out.strip().splitlines()[-2:]
    values = dict(zip(header.split(','), row.split(','), strict=True))
    return {k: v if k == 'model' else float(v) if k.startswith('gflops') else int(v) for k, v in values.items()}


def test_sam_cffnet_matches_the_reference(capsys: pytest.CaptureFixture[str]) -> None:
    row = cli_report(capsys, 'models/sam_cffnet.yaml')
    assert main(['report', '--config', 'models/sam_cffnet.yaml']) == 0
    row['printed'] = capsys.readouterr().out
    assert row['model'] == 'sam_cffnet' and row['tile_size'] == 256
    assert row['params_trainable'] == REF_TRAINABLE
    assert row['params_decoder'] == REF_TRAINABLE
    assert row['params_total'] == REF_TOTAL - SAM_NECK_PARAMS
    assert row['params_frozen'] == row['params_encoder'] == REF_TOTAL - REF_TRAINABLE - SAM_NECK_PARAMS
    assert row['gflops_encoder'] == pytest.approx(REF_ENCODER_GFLOPS - NECK_GFLOPS, abs=0.01)
    assert row['gflops_decoder'] == pytest.approx(REF_DECODER_GFLOPS, abs=0.01)
    assert row['gflops'] == pytest.approx(3114.55 - NECK_GFLOPS, abs=0.02)
    assert '4,258,723' in row['printed'] and 'GFLOPs/tile' in row['printed']


def test_real_and_meta_models_give_the_same_report() -> None:
    args = {'variant': 'vit_tiny', 'input_size': None}
    real = build_model('sam_psp', **args).train()
    meta = build_meta_model(real.config())
    assert next(meta.parameters()).is_meta
    a, b = model_report(real, 64), model_report(meta, 64)
    assert a == {**b, 'model': a['model']} and a['gflops_encoder'] > 0 and a['gflops_decoder'] > 0
    assert real.training and not next(real.parameters()).is_meta  # the model itself is untouched


def test_baseline_split_and_counts() -> None:
    row = model_report(build_model('attention_unet', base_channels=64), 256, name='attention_unet')
    assert row['params_total'] == row['params_trainable'] == 34_878_573 and row['params_frozen'] == 0
    assert row['gflops'] == pytest.approx(132.85, abs=0.01)  # the usual 66.4 GMACs at 256 px
    assert 0 < row['gflops_encoder'] < row['gflops']
    # smp's MiT constructor needs real scalars: still built without real weights, and split encoder / decoder
    config = {'class_path': 'sam_cffnet.models.SegFormer', 'init_args': {'backbone': 'mit_b0'}}
    seg = build_meta_model({**config, 'init_args': {'backbone': 'mit_b0', 'backbone_weights': '/no/such/file.pth'}})
    assert model_report(seg, 64)['params_encoder'] == sum(p.numel() for p in seg.net.encoder.parameters())


def test_configs_are_resolved_by_the_cli_parser(tmp_path: Path) -> None:
    """report reads configs exactly as fit does: later files merge into or replace the model, overrides apply."""
    data = tmp_path / 'data.yaml'
    data.write_text(
        'model:\n  model:\n    class_path: sam_cffnet.models.SAMCFFNet\n'
        '    init_args: {variant: vit_b, shared: false}\n'
        '  lr: 0.1\n'
        'data:\n  class_path: sam_cffnet.datamodules.BijieDataModule\n  init_args: {tile_size: 128, root: here}\n'
    )
    cfg = parse_config(['--config', str(data), '--config', 'models/sam_psp.yaml'])
    model = cfg['model']['model']
    assert model['class_path'] == 'sam_cffnet.models.SAMPSPNet' and model['init_args']['variant'] == 'vit_l'
    assert cfg['model']['lr'] == 0.1 and cfg['data']['init_args']['tile_size'] == 128
    same = parse_config(['--config', str(data), '--model.model.input_size', 'null'])['model']['model']['init_args']
    assert same['variant'] == 'vit_b' and same['shared'] is False and same['input_size'] is None
    assert same['attention'] == 'reference'  # every encoder option has its value in the parsed config


def test_run_report_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    block = {
        'class_path': 'sam_cffnet.models.SAMASPPNet',
        'init_args': {'variant': 'vit_tiny', 'input_size': None, 'sam_checkpoint': 'x'},
    }
    path = tmp_path / 'r.csv'
    row = run_report(block, csv=path, tile_size=64, in_channels=5)
    printed = capsys.readouterr().out
    assert 'sam_aspp' in printed and path.read_text() == format_csv([row])
    rec = next(csv.DictReader(io.StringIO(path.read_text())))
    assert int(rec['params_total']) == row['params_total'] and rec['tile_size'] == '64'
    run_report(block, csv='-', tile_size=64)
    out = capsys.readouterr().out
    assert out.startswith('model,tile_size,params_total,params_trainable,params_frozen')


def test_models_with_a_dem_input_are_counted_with_it(capsys: pytest.CaptureFixture[str]) -> None:
    """HPCL-Net takes (image, dem): the report feeds both, and the DEM branch + fusion add their FLOPs."""
    fused = cli_report(capsys, 'hpcl_bijie.yaml', 'hpcl_ablation/dem_fusion.yaml')
    optical = cli_report(capsys, 'hpcl_bijie.yaml', 'hpcl_ablation/no_dem.yaml')
    assert fused['params_trainable'] == 9_620_493 and optical['params_trainable'] == REF_TRAINABLE
    assert fused['gflops_encoder'] == optical['gflops_encoder']
    assert fused['gflops_decoder'] > optical['gflops_decoder']
    tiny = {'variant': 'vit_tiny', 'input_size': None, 'dem_in_channels': 2, 'hpcl': False}
    model = build_model('hpcl_net', **tiny)
    assert model.extra_input_channels() == {'dem': 2}
    assert (
        model_report(model, tile_size=64)['gflops']
        > model_report(build_model('hpcl_net', **{**tiny, 'fusion': 'none'}), tile_size=64)['gflops']
    )
