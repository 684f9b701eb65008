"""Lightning callbacks of the package."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter, Checkpoint, ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info
from PIL import Image

from .errors import OutputExistsError

__all__ = ['DemoBanner', 'LastCheckpoint', 'PredictionWriter']

BANNER = '=' * 100


class LastCheckpoint(Checkpoint):
    """Writes ``last.ckpt`` at the end of every training epoch: the checkpoint to resume from.

    Lightning 2.6's ``ModelCheckpoint(save_last=True, monitor=...)`` refreshes ``last.ckpt`` only when a new best is
    written in the same step, so it can hold the best epoch instead of the last one and a resume repeats epochs.
    This callback writes the last completed epoch whatever the monitored metric did, through a temporary file
    renamed into place (a job killed while writing leaves the previous ``last.ckpt`` intact). It runs after every
    ``ModelCheckpoint`` (it puts itself last at setup), so the file holds the best-model bookkeeping of the epoch it
    ends, and a resumed run keeps choosing and pruning the best checkpoints as the uninterrupted one would.

    Args:
        dirpath: where to write (default: the ``ModelCheckpoint``'s folder, else ``<default_root_dir>/checkpoints``).
        filename: file name without extension.
    """

    def __init__(self, dirpath: str | None = None, filename: str = 'last') -> None:
        self.dirpath = dirpath
        self.filename = filename
        self.last_model_path = ''
        self._written_step = -1

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self in trainer.callbacks:  # after every other callback (ModelCheckpoint included): its state is final
            trainer.callbacks.remove(self)
            trainer.callbacks.append(self)

    def _target(self, trainer: Trainer) -> Path:
        best = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)
        if self.dirpath is not None:
            folder = Path(self.dirpath)
        elif best is not None and best.dirpath:
            folder = Path(best.dirpath)
        else:
            folder = Path(trainer.default_root_dir) / 'checkpoints'
        return folder / f'{self.filename}.ckpt'

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.fast_dev_run or trainer.sanity_checking or self._written_step == trainer.global_step:
            return
        target = self._target(trainer)
        tmp = target.with_name(f'.{target.name}.partial')
        if trainer.is_global_zero:
            target.parent.mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(tmp)  # every rank takes part; rank 0 writes
        if trainer.is_global_zero:
            os.replace(tmp, target)
        trainer.strategy.barrier('last_checkpoint')
        self.last_model_path = str(target)
        self._written_step = trainer.global_step

    def state_dict(self) -> dict[str, Any]:
        return {'last_model_path': self.last_model_path}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.last_model_path = state_dict.get('last_model_path', '')


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
        last = next((c.last_model_path for c in trainer.callbacks if isinstance(c, LastCheckpoint)), '')
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


class PredictionWriter(BasePredictionWriter):
    """Writes what ``python -m sam_cffnet predict`` predicts: one PNG per tile, and a picture of the first tiles.

    Files: ``tile_000042_probability.png`` (landslide probability, 8-bit: 255 = 1.0) and ``tile_000042_mask.png``
    (0/255) in ``output_dir``; ``overview.png`` shows the first tiles with their prediction. Tile numbers follow the
    order of the predict loader (the datamodule's predict split, unshuffled). For whole scenes with coordinates use
    ``python -m sam_cffnet map`` instead.

    Args:
        output_dir: where to write (default: ``<trainer.default_root_dir>/predictions``).
        overwrite: allow writing into a folder that already holds predictions.
        write_probability: also write the probability PNGs.
        overview_tiles: tiles shown in ``overview.png`` (0 = none).
    """

    def __init__(
        self,
        output_dir: str | None = None,
        overwrite: bool = False,
        write_probability: bool = True,
        overview_tiles: int = 8,
    ) -> None:
        super().__init__(write_interval='batch')
        self.output_dir = output_dir
        self.overwrite = overwrite
        self.write_probability = write_probability
        self.overview_tiles = overview_tiles
        self._dir: Path | None = None
        self._count = 0
        self._overview: list[tuple[Any, Any]] = []

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != 'predict':
            return
        out = Path(self.output_dir) if self.output_dir else Path(trainer.default_root_dir) / 'predictions'
        if out.exists() and any(out.glob('tile_*.png')) and not self.overwrite:
            raise OutputExistsError(
                f'{out} already holds predictions; choose another --prediction_writer.output_dir or pass '
                f'--prediction_writer.overwrite true'
            )
        out.mkdir(parents=True, exist_ok=True)
        self._dir, self._count, self._overview = out, 0, []

    def write_on_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        assert self._dir is not None
        probs = prediction['probabilities'].float().cpu().numpy()
        masks = prediction['prediction'].cpu().numpy()
        for i in range(probs.shape[0]):
            index = int(batch_indices[i]) if batch_indices else self._count
            self._count += 1
            stem = self._dir / f'tile_{index:06d}'
            Image.fromarray((masks[i] > 0).astype(np.uint8) * 255).save(f'{stem}_mask.png')
            if self.write_probability:
                Image.fromarray(np.round(probs[i] * 255).astype(np.uint8)).save(f'{stem}_probability.png')
            if len(self._overview) < self.overview_tiles:
                self._overview.append((batch['image'][i].detach().float().cpu(), prediction['prediction'][i].cpu()))

    def on_predict_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._dir is None or not self._overview or not trainer.is_global_zero:
            return
        import torch

        from .visualize import prediction_figure

        images = torch.stack([im for im, _ in self._overview])
        preds = torch.stack([p for _, p in self._overview])
        fig = prediction_figure(images, None, preds)
        fig.savefig(self._dir / 'overview.png', dpi=80)
        rank_zero_info(
            f'predictions: {self._count} tiles written to {self._dir} (overview: {self._dir / "overview.png"})'
        )
