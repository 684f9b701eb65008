"""Lightning callbacks of the package."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter, Checkpoint, ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info
from PIL import Image

from .errors import OutputExistsError

__all__ = [
    'PREDICTION_PATTERNS',
    'BestCheckpoint',
    'DemoBanner',
    'LastCheckpoint',
    'PredictionWriter',
    'existing_predictions',
]

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
        """Move this callback to the end of the Trainer's callbacks, so that it runs after every ``ModelCheckpoint``."""
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
        """Write ``last.ckpt`` through a temporary file, then remove the best checkpoints it no longer names."""
        if trainer.fast_dev_run or trainer.sanity_checking or self._written_step == trainer.global_step:
            return
        target = self._target(trainer)
        tmp = target.with_name(f'.{target.name}.partial')
        if trainer.is_global_zero:
            target.parent.mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(tmp, weights_only=False)  # every rank takes part; rank 0 writes
        if trainer.is_global_zero:
            os.replace(tmp, target)
        trainer.strategy.barrier('last_checkpoint')
        self.last_model_path = str(target)
        self._written_step = trainer.global_step
        for callback in trainer.callbacks:  # last.ckpt no longer names the best files they replaced: remove them
            if isinstance(callback, BestCheckpoint):
                callback.remove_replaced(trainer)

    def state_dict(self) -> dict[str, Any]:
        """The callback's checkpoint state: the path of the last checkpoint written."""
        return {'last_model_path': self.last_model_path}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the path of the last checkpoint written."""
        self.last_model_path = state_dict.get('last_model_path', '')


class BestCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` (the ``--checkpoint.*`` options) with a choice of the epoch kept on a tie.

    Its best checkpoints also stay single across a kill and a resume.

    * ``ties='later'`` keeps the later epoch when the monitored value equals the best so far (TransLandSeg's
      ``valid_loss <= valid_loss_min``, ``train.py:201``); ``'earlier'`` (Lightning's strict comparison, SAM-CFFNet's
      ``>``) keeps the earlier one.
    * A best checkpoint that a new best replaces is removed only once :class:`LastCheckpoint` has written the
      ``last.ckpt`` that no longer names it (at the end of fitting without one). A run killed in between therefore
      still has the best checkpoint its ``last.ckpt`` names. On a resume, the best checkpoints written after the
      resumed ``last.ckpt`` (the interrupted epoch's, which is repeated) and those it had already replaced are
      removed, so the repeated epoch writes ``best-....ckpt`` again instead of a ``best-...-v1.ckpt`` beside it.

    Args:
        ties: ``'earlier'`` (default) or ``'later'``: which epoch is kept when the monitored value ties the best.
        dirpath, filename, monitor, verbose, save_last, save_top_k, save_on_exception, save_weights_only, mode,
            auto_insert_metric_name, every_n_train_steps, train_time_interval, every_n_epochs,
            save_on_train_epoch_end, enable_version_counter: as Lightning's ``ModelCheckpoint``.
    """

    def __init__(
        self,
        dirpath: str | Path | None = None,
        filename: str | None = None,
        monitor: str | None = None,
        verbose: bool = False,
        save_last: bool | Literal['link'] | None = None,
        save_top_k: int = 1,
        save_on_exception: bool = False,
        save_weights_only: bool = False,
        mode: str = 'min',
        auto_insert_metric_name: bool = True,
        every_n_train_steps: int | None = None,
        train_time_interval: timedelta | None = None,
        every_n_epochs: int | None = None,
        save_on_train_epoch_end: bool | None = None,
        enable_version_counter: bool = True,
        ties: Literal['earlier', 'later'] = 'earlier',
    ) -> None:
        super().__init__(
            dirpath=dirpath,
            filename=filename,
            monitor=monitor,
            verbose=verbose,
            save_last=save_last,
            save_top_k=save_top_k,
            save_on_exception=save_on_exception,
            save_weights_only=save_weights_only,
            mode=mode,
            auto_insert_metric_name=auto_insert_metric_name,
            every_n_train_steps=every_n_train_steps,
            train_time_interval=train_time_interval,
            every_n_epochs=every_n_epochs,
            save_on_train_epoch_end=save_on_train_epoch_end,
            enable_version_counter=enable_version_counter,
        )
        if ties not in ('earlier', 'later'):
            raise ValueError(f"checkpoint ties must be 'earlier' or 'later', got {ties!r}")
        self.ties = ties
        self._replaced: list[str] = []
        self._resumed = False

    @property
    def state_key(self) -> str:
        """Lightning's ``ModelCheckpoint{...}`` key: checkpoints of either class resume into the other."""
        return super().state_key.replace(type(self).__qualname__, 'ModelCheckpoint', 1)

    def check_monitor_top_k(self, trainer: Trainer, current: torch.Tensor | None = None) -> bool:
        """Whether ``current`` enters the best checkpoints; with ``ties='later'`` a tie with the k-th best does."""
        full = self.save_top_k not in (-1, 0) and len(self.best_k_models) >= self.save_top_k
        if self.ties == 'earlier' or current is None or not full:
            return super().check_monitor_top_k(trainer, current)
        op = {'min': torch.le, 'max': torch.ge}[self.mode]
        return trainer.strategy.reduce_boolean_decision(bool(op(current, self.best_k_models[self.kth_best_model_path])))

    def _update_best_and_save(
        self, current: torch.Tensor, trainer: Trainer, monitor_candidates: dict[str, torch.Tensor]
    ) -> None:
        super()._update_best_and_save(current, trainer, monitor_candidates)
        if self.ties == 'later':  # of equal scores the newest: dicts keep insertion order
            best = [path for path, score in self.best_k_models.items() if score == self.best_model_score]
            self.best_model_path = best[-1]

    def _remove_checkpoint(self, trainer: Trainer, filepath: str) -> None:
        if any(isinstance(c, LastCheckpoint) for c in trainer.callbacks) and trainer.state.fn == 'fit':
            self._replaced.append(filepath)  # removed once last.ckpt stops naming it
        else:
            super()._remove_checkpoint(trainer, filepath)

    def remove_replaced(self, trainer: Trainer) -> None:
        """Remove the best checkpoints that newer bests replaced (called once ``last.ckpt`` is written)."""
        for path in self._replaced:
            if path not in self.best_k_models and Path(path).exists():
                super()._remove_checkpoint(trainer, path)
        self._replaced = []

    def state_dict(self) -> dict[str, Any]:
        """Lightning's state plus ``ties`` and the replaced best checkpoints not yet removed."""
        return {**super().state_dict(), 'ties': self.ties, 'replaced': list(self._replaced)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore Lightning's state and the replaced best checkpoints, and note that the run was resumed."""
        super().load_state_dict(state_dict)
        self._replaced = list(state_dict.get('replaced', []))
        self._resumed = True

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """On a resume, remove the best checkpoints of the interrupted epoch and those already replaced."""
        super().on_train_start(trainer, pl_module)
        if self._resumed and trainer.ckpt_path:
            self._remove_after_resume(trainer, Path(trainer.ckpt_path))

    def _remove_after_resume(self, trainer: Trainer, resumed_from: Path) -> None:
        """Remove the stale best checkpoints left by the interrupted run.

        Those of the interrupted epoch (written after ``resumed_from``), and those that ``resumed_from`` says were
        already replaced.
        """
        stale = [p for p in self._replaced if Path(p).exists()]
        self._replaced = []
        if self.dirpath and Path(self.dirpath).is_dir():
            prefix = (self.filename or '').split('{')[0]
            tracked = {str(Path(p).resolve()) for p in self.best_k_models} | {str(resumed_from.resolve())}
            for path in sorted(Path(self.dirpath).glob(f'{prefix}*{self.FILE_EXTENSION}')):
                if str(path.resolve()) in tracked or path.name.startswith(f'{self.CHECKPOINT_NAME_LAST}.'):
                    continue
                try:
                    step = torch.load(path, map_location='cpu', weights_only=True, mmap=True).get('global_step', -1)
                    newer = step > trainer.global_step
                except Exception:  # a file cut short by the kill
                    newer = path.stat().st_mtime > resumed_from.stat().st_mtime
                if newer:
                    stale.append(str(path))
        if trainer.is_global_zero:
            for path in stale:
                rank_zero_info(f'{path}: left by the run interrupted after {resumed_from.name}, removed')
                Path(path).unlink(missing_ok=True)
        trainer.strategy.barrier('best_checkpoint_resume')

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Remove the best checkpoints that newer bests replaced."""
        super().on_train_end(trainer, pl_module)
        self.remove_replaced(trainer)


class DemoBanner(Callback):
    """Says plainly that a run is a demo (random SAM weights, synthetic data) and where its outputs are."""

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Print the demo banner (random SAM weights, synthetic data)."""
        rank_zero_info(
            f'\n{BANNER}\nDEMO RUN: a tiny SAM encoder with RANDOM weights (no pretrained SAM checkpoint) trained on a '
            f'small synthetic\nlandslide-like dataset in the Bijie layout. It shows the pipeline end to end; its '
            f'numbers say nothing about\nreal landslide mapping. For real work see README.md (SAM checkpoints, '
            f'configs/bijie.yaml).\n{BANNER}'
        )

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Print where the demo's checkpoints, logs and picture of predictions are, and how to evaluate it."""
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


#: The files a :class:`PredictionWriter` writes (what :func:`existing_predictions` looks for).
PREDICTION_PATTERNS = ('*_mask.png', '*_probability.png', 'overview.png')


def existing_predictions(folder: str | Path) -> list[Path]:
    """The prediction files already in ``folder`` (``*_mask.png``, ``*_probability.png``, ``overview.png``).

    ``predict`` refuses to write into a folder that holds any (without ``--prediction_writer.overwrite``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted({p for pattern in PREDICTION_PATTERNS for p in folder.glob(pattern)})


class PredictionWriter(BasePredictionWriter):
    """Writes what ``python -m sam_cffnet predict`` predicts: one PNG per source image and a picture of the first tiles.

    Files are named after the image the tiles come from, at that image's own size: ``df001_mask.png`` (0/255) and
    ``df001_probability.png`` (landslide probability, 8-bit: 255 = 1.0) for the Bijie chip ``df001.png``, whatever the
    tile size (a chip resized to one tile is resized back: bilinear probability, nearest mask; a chip cut into
    windows is put together again, a later window overwriting an earlier one where they overlap). Datasets say
    where a tile comes from with ``tile_source(index)`` (:func:`~sam_cffnet.datasets.utils.tile_source_dict`);
    for those without it, files are named after the tile's index in the predict split (``tile_000042_mask.png``).
    ``overview.png`` shows the first tiles with their prediction. For whole scenes with coordinates use
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
        self._written = 0
        self._overview: list[tuple[Any, Any]] = []
        self._source: Any = None
        self._pending: dict[str, dict[str, Any]] = {}

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """For prediction, create the output folder; one that already holds predictions needs ``overwrite``."""
        if stage != 'predict':
            return
        out = Path(self.output_dir) if self.output_dir else Path(trainer.default_root_dir) / 'predictions'
        if existing_predictions(out) and not self.overwrite:
            raise OutputExistsError(
                f'{out} already holds predictions; choose another --prediction_writer.output_dir or pass '
                f'--prediction_writer.overwrite true'
            )
        out.mkdir(parents=True, exist_ok=True)
        self._dir, self._count, self._written, self._overview, self._pending = out, 0, 0, [], {}
        self._source = None

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Take the predict dataset's ``tile_source`` (``None`` without one), which names the files."""
        loaders = trainer.predict_dataloaders
        loader = loaders[0] if isinstance(loaders, list | tuple) and loaders else loaders
        self._source = getattr(getattr(loader, 'dataset', None), 'tile_source', None)

    def _save(self, name: str, probability: np.ndarray, mask: np.ndarray) -> None:
        assert self._dir is not None
        Image.fromarray((mask > 0).astype(np.uint8) * 255).save(self._dir / f'{name}_mask.png')
        if self.write_probability:
            Image.fromarray(np.round(np.clip(probability, 0, 1) * 255).astype(np.uint8)).save(
                self._dir / f'{name}_probability.png'
            )
        self._written += 1

    def _place(self, source: dict[str, Any], probability: np.ndarray, mask: np.ndarray) -> None:
        """Put one tile's prediction into its source image; write the image when it is complete."""
        import torch
        import torch.nn.functional as F

        name, h, w = source['name'], source['height'], source['width']
        if source['window'] is None:  # the whole source, resized to the tile: back to its own size
            if probability.shape != (h, w):
                prob = torch.from_numpy(probability.astype(np.float32))[None, None]
                probability = F.interpolate(prob, size=(h, w), mode='bilinear', align_corners=False)[0, 0].numpy()
                mask = F.interpolate(torch.from_numpy(mask.astype(np.float32))[None, None], size=(h, w),
                                     mode='nearest-exact')[0, 0].numpy()  # fmt: skip
            self._save(name, probability, mask)
            return
        entry = self._pending.setdefault(
            name,
            {
                'probability': np.zeros((h, w), np.float32),
                'mask': np.zeros((h, w), np.uint8),
                'left': 0,
                'tiles': source['tiles'],
            },
        )
        r, q, _ = source['window']
        hh, ww = min(probability.shape[0], h - r), min(probability.shape[1], w - q)
        entry['probability'][r : r + hh, q : q + ww] = probability[:hh, :ww]
        entry['mask'][r : r + hh, q : q + ww] = mask[:hh, :ww] > 0
        entry['left'] += 1
        if entry['left'] >= entry['tiles']:
            self._save(name, entry['probability'], entry['mask'])
            del self._pending[name]

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
        """Write the batch's predictions: per tile, or placed into their source images."""
        assert self._dir is not None
        probs = prediction['probabilities'].float().cpu().numpy()
        masks = prediction['prediction'].cpu().numpy()
        for i in range(probs.shape[0]):
            index = int(batch_indices[i]) if batch_indices else self._count
            self._count += 1
            if self._source is not None and batch_indices:
                self._place(self._source(index), probs[i], masks[i])
            else:
                self._save(f'tile_{index:06d}', probs[i], masks[i])
            if len(self._overview) < self.overview_tiles:
                self._overview.append((batch['image'][i].detach().float().cpu(), prediction['prediction'][i].cpu()))

    def on_predict_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Write the images still missing tiles (predicted on other processes), then ``overview.png``."""
        if self._dir is None:
            return
        for name in sorted(self._pending):  # windows of a source predicted on other processes (DDP)
            entry = self._pending.pop(name)
            warnings.warn(
                f'{name}: {entry["left"]} of its {entry["tiles"]} tiles were predicted in this process (the others on '
                f'other processes); written with the missing parts as background: predict on one device for whole '
                f'images',
                stacklevel=1,
            )
            self._save(name, entry['probability'], entry['mask'])
        if not self._overview or not trainer.is_global_zero:
            return
        import torch

        from .visualize import prediction_figure

        images = torch.stack([im for im, _ in self._overview])
        preds = torch.stack([p for _, p in self._overview])
        fig = prediction_figure(images, None, preds)
        fig.savefig(self._dir / 'overview.png', dpi=80)
        rank_zero_info(
            f'predictions: {self._count} tiles written to {self._dir} as {self._written} images '
            f'(overview: {self._dir / "overview.png"})'
        )
