"""The one LightningModule of the package: binary landslide segmentation with any registered model.

The model is chosen by name from :mod:`sam_cffnet.models.registry` (``model: sam_cffnet``, ``model_args: {...}``),
so SAM-CFFNet, the decoder ablations, the baselines, TransLandSeg and HPCL-Net all train with this task.

Checkpoints stay small: the frozen weights that were read from a pretrained file (e.g. 1.2 GB of SAM ViT-L) are not
written; they are rebuilt from that file (named in the hyper-parameters) when the checkpoint is loaded, and a
fingerprint check refuses a different SAM checkpoint. :func:`export_checkpoint` writes a self-contained file.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor

from ..losses import BCEDiceLoss
from ..metrics import LandslideMetrics
from ..models.base import LandslideModel, count_parameters
from ..models.registry import build_model

__all__ = ['SegmentationTask', 'clean_model_args', 'export_checkpoint']

#: Checkpoint entry holding what is needed to rebuild the model and the input pipeline.
CKPT_KEY = 'sam_cffnet'


def clean_model_args(model_args: dict[str, Any] | None) -> dict[str, Any]:
    """A copy of ``model_args`` where the strings ``'None'``/``'null'`` are None.

    ``model_args`` is a free-form dict, so ``--model.init_args.model_args.sam_checkpoint null`` on the command line
    reaches the task as the string ``'None'``; it means None.
    """
    return {k: (None if isinstance(v, str) and v in ('None', 'null') else v) for k, v in (model_args or {}).items()}


class SegmentationTask(LightningModule):
    """Train, validate, test and predict a landslide segmentation model.

    Args:
        model: registered model name (``sam_cffnet``, ``sam_psp``, ``translandseg``, ...; see
            ``python -m sam_cffnet models``).
        model_args: keyword arguments of the model builder (e.g. ``encoder``, ``sam_checkpoint``).
        in_channels: bands of the input images; linked from the datamodule by the CLI. A different
            ``model_args.in_channels`` is an error.
        bce_weight: weight of BCE-with-logits in the loss (reference 0.5).
        dice_weight: weight of Dice in the loss (reference 0.5).
        pos_weight: BCE weight of the landslide class (reference: none).
        dice_reduction: ``'batch'`` (reference: one Dice over the whole batch) or ``'image'``.
        threshold: probability threshold of the metrics and predictions (0.5).
        threshold_on_logits: reproduce the reference's ``logit > threshold`` rule.
        lr: AdamW learning rate (reference 2e-4).
        weight_decay: AdamW weight decay (reference: torch's default 0.01).
        betas: AdamW betas.
        scheduler: ``'cosine'`` (reference: CosineAnnealingLR over the run, stepped per epoch) or ``'none'``.
        eta_min: final learning rate of the cosine schedule (reference 1e-7).
        num_figure_tiles: tiles shown in the validation figure (0 = no figure).
    """

    monitor = 'val_landslide_iou'
    mode = 'max'

    def __init__(
        self,
        model: str = 'sam_cffnet',
        model_args: dict[str, Any] | None = None,
        in_channels: int | None = None,
        bce_weight: float = 0.5,
        dice_weight: float = 0.5,
        pos_weight: float | None = None,
        dice_reduction: Literal['batch', 'image'] = 'batch',
        threshold: float = 0.5,
        threshold_on_logits: bool = False,
        lr: float = 2e-4,
        weight_decay: float = 0.01,
        betas: tuple[float, float] = (0.9, 0.999),
        scheduler: Literal['cosine', 'none'] = 'cosine',
        eta_min: float = 1e-7,
        num_figure_tiles: int = 4,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        args = clean_model_args(model_args)
        if in_channels is not None:
            if 'in_channels' in args and int(args['in_channels']) != int(in_channels):
                raise ValueError(
                    f'band count mismatch: the data delivers {in_channels}-band images but the model is configured '
                    f'with in_channels={args["in_channels"]}; remove model_args.in_channels or fix the band selection'
                )
            args['in_channels'] = in_channels
        self.model: LandslideModel = build_model(model, **args)  # type: ignore[assignment]
        encoder = getattr(self.model, 'encoder', None)
        if encoder is not None and hasattr(encoder, 'checkpoint_path') and encoder.checkpoint_path is None:
            rank_zero_warn(
                f'{model}: no SAM checkpoint given (model_args.sam_checkpoint), the SAM encoder has RANDOM weights. '
                f'This is only meaningful for tests and the demo.'
            )
        self.loss_fn = BCEDiceLoss(bce_weight, dice_weight, pos_weight, dice_reduction)
        metric_args = {'threshold': threshold, 'threshold_on_logits': threshold_on_logits}
        self.val_metrics = LandslideMetrics(**metric_args)
        self.test_metrics = LandslideMetrics(**metric_args)
        self.train_metrics = LandslideMetrics(**metric_args)
        self._figure_batch: dict[str, Tensor] | None = None
        self.preprocessing: dict[str, Any] | None = None

    # ------------------------------------------------------------------ forward
    def forward(self, *inputs: Tensor) -> Tensor:
        """Logits B x 1 x H x W from the model's inputs (``model.input_keys``)."""
        return self.model(*inputs)

    def _inputs(self, batch: dict[str, Tensor]) -> list[Tensor]:
        keys = getattr(self.model, 'input_keys', ('image',))
        missing = [k for k in keys if k not in batch]
        if missing:
            raise KeyError(f'the model needs batch keys {list(keys)}, the datamodule gave {sorted(batch)}')
        inputs = [batch[k] for k in keys]
        for key in getattr(self.model, 'optional_input_keys', ()):  # e.g. cached encoder 'features', in order
            if key not in batch:
                break
            inputs.append(batch[key])
        return inputs

    # ------------------------------------------------------------------ steps
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        logits, aux = self.model.training_outputs(batch)
        seg = self.loss_fn(logits, batch['mask'])
        loss = seg + sum(aux.values(), torch.zeros((), device=seg.device))
        bs = logits.shape[0]
        self.log('train_loss', loss, prog_bar=True, batch_size=bs)
        if aux:
            self.log('train_seg_loss', seg, batch_size=bs)
            for name, value in aux.items():
                self.log(f'train_{name}', value, batch_size=bs)
        self.train_metrics.update(logits.detach(), batch['mask'])
        return loss

    def on_train_epoch_end(self) -> None:
        self._log_metrics('train', self.train_metrics)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        logits = self(*self._inputs(batch))
        self.log('val_loss', self.loss_fn(logits, batch['mask']), prog_bar=True, batch_size=logits.shape[0])
        self.val_metrics.update(logits, batch['mask'])
        if batch_idx == 0 and self.hparams.num_figure_tiles:
            n = self.hparams.num_figure_tiles
            self._figure_batch = {
                'image': batch['image'][:n].detach().float().cpu(),
                'mask': batch['mask'][:n].detach().cpu(),
                'prediction': self.val_metrics.predict(logits[:n, 0]).detach().cpu(),
            }

    def on_validation_epoch_end(self) -> None:
        self._log_metrics('val', self.val_metrics, prog_bar=('landslide_iou',))
        if self._figure_batch is not None and not self.trainer.sanity_checking:
            self._log_figure(self._figure_batch)
        self._figure_batch = None

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        logits = self(*self._inputs(batch))
        self.log('test_loss', self.loss_fn(logits, batch['mask']), batch_size=logits.shape[0])
        self.test_metrics.update(logits, batch['mask'])

    def on_test_epoch_end(self) -> None:
        self._log_metrics('test', self.test_metrics)

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Tensor]:
        """Probabilities (B x H x W, float) and binary predictions (B x H x W, int64)."""
        logits = self(*self._inputs(batch))[:, 0]
        out = {'probabilities': torch.sigmoid(logits.float()), 'prediction': self.val_metrics.predict(logits)}
        for key in ('index', 'name'):
            if key in batch:
                out[key] = batch[key]
        return out

    def _log_metrics(self, stage: str, metrics: LandslideMetrics, prog_bar: tuple[str, ...] = ()) -> None:
        if int(metrics.confmat.sum()) == 0 and not metrics._update_count:
            return
        values = metrics.compute()
        for name, value in values.items():
            self.log(f'{stage}_{name}', value.float(), prog_bar=name in prog_bar, sync_dist=False)
        metrics.reset()

    # ------------------------------------------------------------------ figures
    def _log_figure(self, batch: dict[str, Tensor]) -> None:
        from ..visualize import prediction_figure

        fig = prediction_figure(batch['image'], batch['mask'], batch['prediction'], self._display_bands())
        epoch = self.current_epoch
        for logger in self.loggers:
            experiment = getattr(logger, 'experiment', None)
            if hasattr(experiment, 'add_figure'):
                experiment.add_figure('val/predictions', fig, global_step=self.global_step, close=False)
        log_dir = self.trainer.log_dir
        if log_dir is not None and self.trainer.is_global_zero:
            out = Path(log_dir) / 'predictions'
            out.mkdir(parents=True, exist_ok=True)
            fig.savefig(out / f'val_epoch{epoch:03d}.png', dpi=80)
        import matplotlib.pyplot as plt

        plt.close(fig)

    def _display_bands(self) -> list[int] | None:
        pre = self.preprocessing or {}
        rgb = pre.get('rgb_indices')
        return list(rgb) if rgb else None

    # ------------------------------------------------------------------ optim
    def configure_optimizers(self) -> dict[str, Any]:
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise ValueError(f'model {self.hparams.model!r} has no trainable parameters')
        hp = self.hparams
        optimizer = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay, betas=tuple(hp.betas))
        if hp.scheduler == 'none':
            return {'optimizer': optimizer}
        t_max = self.trainer.max_epochs if self.trainer.max_epochs and self.trainer.max_epochs > 0 else 30
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=t_max, eta_min=hp.eta_min)
        return {'optimizer': optimizer, 'lr_scheduler': {'scheduler': scheduler, 'interval': 'epoch'}}

    def on_fit_start(self) -> None:
        counts = count_parameters(self.model)
        rank_zero_info(
            f'{self.hparams.model}: {counts["trainable"]:,} trainable parameters, {counts["frozen"]:,} frozen '
            f'({counts["total"]:,} total, {100 * counts["trainable"] / max(counts["total"], 1):.2f} % trainable)'
        )

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, 'datamodule', None) if self._trainer is not None else None
        config = getattr(datamodule, 'preprocessing_config', None)
        if callable(config):
            self.preprocessing = config()

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Drop the frozen weights that are rebuilt from a pretrained file and record how to rebuild them."""
        external = {f'model.{k}' for k in self.model.external_state_keys()}
        state = checkpoint['state_dict']
        for key in external:
            state.pop(key, None)
        encoder = getattr(self.model, 'encoder', None)
        checkpoint[CKPT_KEY] = {
            'model': self.hparams.model,
            'model_args': copy.deepcopy(dict(self.hparams.model_args or {})),
            'external_keys': sorted(external),
            'encoder_fingerprint': encoder.fingerprint() if hasattr(encoder, 'fingerprint') else None,
            'preprocessing': self.preprocessing,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Check the checkpoint is for this model and restore the frozen weights from the current model."""
        info = checkpoint.get(CKPT_KEY)
        hp = checkpoint.get('hyper_parameters', {})
        saved_model = (info or {}).get('model', hp.get('model'))
        if saved_model is not None and saved_model != self.hparams.model:
            raise ValueError(
                f'the checkpoint was trained with model {saved_model!r}, but this run builds {self.hparams.model!r}; '
                f'use the config the checkpoint was trained with'
            )
        state = checkpoint['state_dict']
        own = self.state_dict()
        if info is not None:
            fp = info.get('encoder_fingerprint')
            encoder = getattr(self.model, 'encoder', None)
            if info.get('external_keys') and fp and hasattr(encoder, 'fingerprint') and encoder.fingerprint() != fp:
                raise ValueError(
                    f'the frozen encoder weights differ from the ones this checkpoint was trained with '
                    f'(fingerprint {encoder.fingerprint()} != {fp}); point model_args.sam_checkpoint to the same SAM '
                    f'checkpoint used for training ({info.get("model_args", {}).get("sam_checkpoint")})'
                )
            for key in info.get('external_keys', []):
                if key not in state and key in own:
                    state[key] = own[key]
            if info.get('preprocessing') is not None:
                self.preprocessing = info['preprocessing']
        unknown = [k for k in state if k not in own]
        missing = [k for k in own if k not in state]
        if unknown or missing:
            raise ValueError(
                f'the checkpoint does not fit model {self.hparams.model!r}: missing {missing[:5]}, unexpected '
                f'{unknown[:5]}; it was probably trained with another model or options'
            )

    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike[str], map_location: str | torch.device = 'cpu', **model_arg_overrides: Any
    ) -> SegmentationTask:
        """Load a task checkpoint with one call (``weights_only=True``), in eval mode.

        Args:
            path: a ``.ckpt`` written by training or :func:`export_checkpoint`.
            map_location: device for the tensors.
            **model_arg_overrides: replace model arguments, e.g. ``sam_checkpoint='/data/sam_vit_l_0b3195.pth'``
                when the SAM file moved since training.
        """
        from ..checkpoint import load_checkpoint_file

        ckpt = load_checkpoint_file(path, map_location=map_location)
        if not isinstance(ckpt, dict) or 'hyper_parameters' not in ckpt or 'state_dict' not in ckpt:
            raise ValueError(f'{path} is not a sam_cffnet training checkpoint (no hyper_parameters/state_dict)')
        hp = dict(ckpt['hyper_parameters'])
        hp['model_args'] = {**dict(hp.get('model_args') or {}), **model_arg_overrides}
        hp = {k: v for k, v in hp.items() if not k.startswith('_')}
        task = cls(**hp)
        task.on_load_checkpoint(ckpt)
        task.load_state_dict(ckpt['state_dict'], strict=True)
        return task.eval()


def export_checkpoint(path: str | os.PathLike[str], out: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Write a self-contained copy of a training checkpoint (frozen weights included) for sharing.

    The exported file needs no SAM checkpoint to load: ``model_args.sam_checkpoint`` is cleared and the full state
    dict is stored.

    Args:
        path: a checkpoint written by training (needs the SAM checkpoint it names to be readable).
        out: destination file; refused if it exists unless ``overwrite``.
        overwrite: allow replacing ``out``.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f'{out} exists; pass overwrite=True (--overwrite) to replace it')
    task = SegmentationTask.from_checkpoint(path)
    hp = {k: v for k, v in dict(task.hparams).items() if not k.startswith('_')}
    hp['model_args'] = {**dict(hp.get('model_args') or {}), 'sam_checkpoint': None}
    encoder = getattr(task.model, 'encoder', None)
    ckpt = {
        'state_dict': task.state_dict(),
        'hyper_parameters': hp,
        CKPT_KEY: {
            'model': hp['model'],
            'model_args': hp['model_args'],
            'external_keys': [],
            'encoder_fingerprint': encoder.fingerprint() if hasattr(encoder, 'fingerprint') else None,
            'preprocessing': task.preprocessing,
            'exported_from': os.fspath(path),
        },
    }
    tmp = out.with_name(out.name + '.partial')
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, tmp)
    os.replace(tmp, out)
    return out
