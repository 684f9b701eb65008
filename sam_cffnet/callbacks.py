"""Lightning callbacks of the package."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info

__all__ = ['DemoBanner']

BANNER = '=' * 100


class DemoBanner(Callback):
    """Says plainly that a run is a demo (random SAM weights, synthetic data) and where its outputs are."""

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        rank_zero_info(
            f'\n{BANNER}\nDEMO RUN: a tiny SAM encoder with RANDOM weights (no pretrained SAM checkpoint) trained on a '
            f'small synthetic\nlandslide-like dataset in the Bijie layout. It shows the pipeline end to end; its '
            f'numbers say nothing about\nreal landslide mapping. For real work see README.md (SAM checkpoints, '
            f'configs/bijie.yaml).\n{BANNER}'
        )

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        ckpt = trainer.checkpoint_callback
        best = getattr(ckpt, 'best_model_path', '') if ckpt is not None else ''
        last = getattr(ckpt, 'last_model_path', '') if ckpt is not None else ''
        log_dir = Path(trainer.log_dir) if trainer.log_dir else None
        pictures = sorted((log_dir / 'predictions').glob('*.png')) if log_dir else []
        lines = [
            f'best checkpoint (val landslide IoU): {best or "-"}',
            f'last checkpoint:                     {last or "-"}',
            f'logs (TensorBoard + CSV metrics):    {log_dir or "-"}',
            f'picture of predictions:              {pictures[-1] if pictures else "-"}',
        ]
        rank_zero_info(
            f'\n{BANNER}\nDEMO FINISHED (random SAM weights, synthetic data). Outputs:\n  ' + '\n  '.join(lines)
        )
        rank_zero_info(
            'Evaluate on the held-out test split:\n'
            f'  python -m sam_cffnet test --config demo.yaml --ckpt_path {best or last}\n{BANNER}'
        )
