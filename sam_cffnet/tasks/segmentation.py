"""The one LightningModule of the package: binary landslide segmentation with any model of the package.

The model is given to the task (dependency injection, as LightningCLI does it)::

    model:
      class_path: sam_cffnet.tasks.SegmentationTask
      init_args:
        model:
          class_path: sam_cffnet.models.SAMCFFNet
          init_args: {variant: vit_l, sam_checkpoint: checkpoints/sam_vit_l_0b3195.pth}

so SAM-CFFNet, the decoder ablations, the baselines, TransLandSeg and HPCL-Net all train with this task and every
model option shows in ``--help`` / ``--print_config``.

Checkpoints stay small: the frozen weights that were read from a pretrained file (e.g. 1.2 GB of SAM ViT-L) are not
written; they are rebuilt from that file (named in the model's config) when the checkpoint is loaded, and a
fingerprint check refuses a different SAM checkpoint. :func:`export_checkpoint` writes a self-contained file.
Checkpoints also carry the input pipeline (:class:`~sam_cffnet.preprocessing.Preprocessing`), the decision rule
(:class:`~sam_cffnet.thresholds.ThresholdRule`) and the random-number states of every process, so that a resumed
run continues exactly where the uninterrupted one would be.
"""

from __future__ import annotations

import copy
import inspect
import os
import random
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from lightning.pytorch.utilities.warnings import PossibleUserWarning
from torch import Tensor, nn

from ..checkpoint import load_checkpoint_file
from ..errors import CheckpointError, ConfigError, OutputExistsError
from ..losses import BCEDiceLoss
from ..metrics import LandslideMetrics
from ..models.base import count_parameters, model_inputs
from ..models.registry import build_model, build_model_from_config
from ..preprocessing import Preprocessing
from ..thresholds import ThresholdRule

# The frozen SAM encoder stays in eval mode during training on purpose (no dropout, fixed statistics): Lightning's
# "Found N module(s) in eval mode at the start of training" would be printed on every run and means nothing here.
warnings.filterwarnings(
    'ignore', message=r'Found \d+ module\(s\) in eval mode at the start of training', category=PossibleUserWarning
)

__all__ = ['CKPT_KEY', 'SegmentationTask', 'export_checkpoint']

#: Checkpoint entry holding what is needed to rebuild the model and the input pipeline.
CKPT_KEY = 'sam_cffnet'
#: Version of that entry (1: ``model`` + ``model_args`` before the redesign; 2: model config).
CKPT_FORMAT = 2


# ---------------------------------------------------------------------------------------------- RNG states
def _rng_state() -> dict[str, Any]:
    """The random-number states of this process, as plain tensors and numbers (``weights_only``-loadable)."""
    state = np.random.get_state()
    out: dict[str, Any] = {
        'python': random.getstate(),
        'numpy': {
            'keys': torch.from_numpy(np.asarray(state[1], dtype=np.int64)),
            'pos': int(state[2]),
            'has_gauss': int(state[3]),
            'cached_gaussian': float(state[4]),
        },
        'torch': torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out['cuda'] = torch.cuda.get_rng_state_all()
    return out


def _set_rng_state(state: dict[str, Any]) -> None:
    py = state['python']
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state['numpy']
    np.random.set_state(
        ('MT19937', n['keys'].numpy().astype(np.uint32), n['pos'], n['has_gauss'], n['cached_gaussian'])
    )
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


class SegmentationTask(LightningModule):
    """Train, validate, test and predict a landslide segmentation model.

    Args:
        model: the model (any :class:`~sam_cffnet.models.LandslideModel`; in a config, its ``class_path`` and
            ``init_args``). Its ``in_channels`` is linked from the datamodule by the CLI.
        bce_weight: weight of BCE-with-logits in the loss (reference 0.5).
        dice_weight: weight of Dice in the loss (reference 0.5).
        pos_weight: BCE weight of the landslide class (reference: none).
        dice_reduction: ``'batch'`` (reference: one Dice over the whole batch) or ``'image'``.
        threshold: threshold of the decision rule used by metrics, figures and predictions (0.5).
        threshold_on_logits: apply ``threshold`` to logits, the reference's ``logit > 0.5`` rule (= probability
            > 0.6225); see :class:`~sam_cffnet.thresholds.ThresholdRule`.
        lr: AdamW learning rate (reference 2e-4).
        weight_decay: AdamW weight decay (reference: torch's default 0.01).
        betas: AdamW betas.
        scheduler: ``'cosine'`` (reference: CosineAnnealingLR stepped per epoch) or ``'none'``.
        scheduler_epochs: the cosine period ``T_max`` in epochs (default: ``trainer.max_epochs``, else 30).
        eta_min: final learning rate of the cosine schedule (reference 1e-7).
        num_figure_tiles: tiles shown in the validation figure (0 = no figure).
    """

    monitor = 'val_landslide_iou'
    mode = 'max'

    def __init__(
        self,
        model: nn.Module,
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
        scheduler_epochs: int | None = None,
        eta_min: float = 1e-7,
        num_figure_tiles: int = 4,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=['model'])
        config = model.config() if callable(getattr(model, 'config', None)) else None
        self.hparams['model'] = config
        self.model = model
        self.loss_fn = BCEDiceLoss(bce_weight, dice_weight, pos_weight, dice_reduction)
        self.threshold_rule = ThresholdRule(threshold, threshold_on_logits)
        self.val_metrics = LandslideMetrics(self.threshold_rule)
        self.test_metrics = LandslideMetrics(self.threshold_rule)
        self.train_metrics = LandslideMetrics(self.threshold_rule)
        self._figure_batch: dict[str, Tensor] | None = None
        #: the input pipeline: from the datamodule when training, from the checkpoint when loaded
        self.preprocessing: Preprocessing | None = None
        self._pending_rng: dict[str, Any] | None = None

    @property
    def model_name(self) -> str:
        """The model's class name (for logs)."""
        return type(self.model).__name__

    @property
    def frozen_encoder(self) -> nn.Module | None:
        """The model's frozen SAM encoder (one with a weights ``fingerprint``), or ``None`` for models without one.

        This is what a :class:`~sam_cffnet.features.CachedFeatureDataModule` in the same Trainer keys and builds its
        feature caches with.
        """
        encoder = getattr(self.model, 'encoder', None)
        return encoder if hasattr(encoder, 'fingerprint') else None

    # ------------------------------------------------------------------ forward
    def forward(self, *inputs: Tensor) -> Tensor:
        """Logits B x 1 x H x W from the model's inputs (``model.input_keys``)."""
        return self.model(*inputs)

    def model_inputs(self, batch: dict[str, Tensor]) -> list[Tensor]:
        """The model's inputs taken from a batch: ``input_keys``, then the ``optional_input_keys`` present."""
        return model_inputs(self.model, batch)

    # ------------------------------------------------------------------ steps
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """Log the training loss (segmentation plus the model's auxiliary losses) and update the training metrics."""
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

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """On the first training batch after a resume, restore the random streams saved in the checkpoint."""
        # first training batch after a resume: continue the random streams where the checkpoint left them (nothing
        # between the end of an epoch and its next training step draws from them: the training loader has its own
        # generator, and Lightning's restart skips the epoch-start hooks of the resumed epoch)
        if self._pending_rng is not None:
            _set_rng_state(self._pending_rng)
            self._pending_rng = None

    def on_train_epoch_end(self) -> None:
        """Log the training metrics of the epoch."""
        self._log_metrics('train', self.train_metrics)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """Log the validation loss, update the validation metrics and keep the first batch's tiles for a figure."""
        logits = self(*self.model_inputs(batch))
        loss = self.loss_fn(logits, batch['mask'])
        self.log('val_loss', loss, prog_bar=True, batch_size=logits.shape[0], sync_dist=True)  # mean over ranks
        self.val_metrics.update(logits, batch['mask'])
        if batch_idx == 0 and self.hparams.num_figure_tiles:
            n = self.hparams.num_figure_tiles
            self._figure_batch = {
                'image': batch['image'][:n].detach().float().cpu(),
                'mask': batch['mask'][:n].detach().cpu(),
                'prediction': self.threshold_rule.from_logits(logits[:n, 0]).detach().cpu(),
            }

    def on_validation_epoch_end(self) -> None:
        """Log the validation metrics and, outside the sanity check, the figure of predictions."""
        self._log_metrics('val', self.val_metrics, prog_bar=('landslide_iou',))
        if self._figure_batch is not None and not self.trainer.sanity_checking:
            self._log_figure(self._figure_batch)
        self._figure_batch = None

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """Log the test loss and update the test metrics."""
        logits = self(*self.model_inputs(batch))
        self.log('test_loss', self.loss_fn(logits, batch['mask']), batch_size=logits.shape[0], sync_dist=True)
        self.test_metrics.update(logits, batch['mask'])

    def on_test_epoch_end(self) -> None:
        """Log the test metrics."""
        self._log_metrics('test', self.test_metrics)

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Tensor]:
        """Probabilities (B x H x W, float) and binary predictions (B x H x W, int64)."""
        logits = self(*self.model_inputs(batch))[:, 0]
        out = {'probabilities': torch.sigmoid(logits.float()), 'prediction': self.threshold_rule.from_logits(logits)}
        for key in ('index', 'name'):
            if key in batch:
                out[key] = batch[key]
        return out

    def _log_metrics(self, stage: str, metrics: LandslideMetrics, prog_bar: tuple[str, ...] = ()) -> None:
        if not metrics.update_called:
            return
        values = metrics.compute()  # already reduced over all processes (torchmetrics): identical on every rank
        for name, value in values.items():
            # sync_dist with 'max' of identical values is exact and tells Lightning the value is synchronised
            self.log(f'{stage}_{name}', value.float(), prog_bar=name in prog_bar, sync_dist=True, reduce_fx='max')
        metrics.reset()

    # ------------------------------------------------------------------ figures
    def _log_figure(self, batch: dict[str, Tensor]) -> None:
        import matplotlib.pyplot as plt

        from ..visualize import prediction_figure

        bands = list(self.preprocessing.rgb_indices) if self.preprocessing and self.preprocessing.rgb_indices else None
        fig = prediction_figure(batch['image'], batch['mask'], batch['prediction'], bands)
        for logger in self.loggers:
            experiment = getattr(logger, 'experiment', None)
            if hasattr(experiment, 'add_figure'):
                experiment.add_figure('val/predictions', fig, global_step=self.global_step, close=False)
        log_dir = self.trainer.log_dir
        if log_dir is not None and self.trainer.is_global_zero:
            out = Path(log_dir) / 'predictions'
            out.mkdir(parents=True, exist_ok=True)
            fig.savefig(out / f'val_epoch{self.current_epoch:03d}.png', dpi=80)
        plt.close(fig)

    # ------------------------------------------------------------------ optim
    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW on the trainable parameters, with per-epoch cosine annealing unless ``scheduler`` is ``'none'``."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise ConfigError(f'{self.model_name} has no trainable parameters')
        hp = self.hparams
        optimizer = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay, betas=tuple(hp.betas))
        if hp.scheduler == 'none':
            return {'optimizer': optimizer}
        t_max = hp.scheduler_epochs
        if not t_max:
            t_max = self.trainer.max_epochs if self.trainer.max_epochs and self.trainer.max_epochs > 0 else 30
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=t_max, eta_min=hp.eta_min)
        return {'optimizer': optimizer, 'lr_scheduler': {'scheduler': scheduler, 'interval': 'epoch'}}

    def on_fit_start(self) -> None:
        """Print the model's trainable, frozen and total parameter counts."""
        counts = count_parameters(self.model)
        rank_zero_info(
            f'{self.model_name}: {counts["trainable"]:,} trainable parameters, {counts["frozen"]:,} frozen '
            f'({counts["total"]:,} total, {100 * counts["trainable"] / max(counts["total"], 1):.2f} % trainable)'
        )

    def setup(self, stage: str) -> None:
        """Warn about random SAM weights, check the band count against the model, take the data's preprocessing."""
        encoder = getattr(self.model, 'encoder', None)
        if stage == 'fit' and getattr(encoder, 'checkpoint_path', '') is None:
            rank_zero_warn(
                f'{self.model_name}: no SAM checkpoint given (sam_checkpoint), the SAM encoder has RANDOM weights. '
                f'This is only meaningful for tests and the demo.'
            )
        datamodule = getattr(self.trainer, 'datamodule', None) if self._trainer is not None else None
        bands = getattr(datamodule, 'num_channels', None)
        if isinstance(bands, int) and isinstance(getattr(self.model, 'in_channels', None), int):
            if bands != self.model.in_channels:
                raise ConfigError(
                    f'band count mismatch: the data delivers {bands}-band images but {self.model_name} takes '
                    f'in_channels={self.model.in_channels}; build the model with in_channels={bands} (the command '
                    f'line links it from the data)'
                )
        pre = getattr(datamodule, 'preprocessing', None)
        if isinstance(pre, Preprocessing):
            if self.preprocessing is not None and stage != 'fit' and self.preprocessing != pre:
                rank_zero_warn(
                    f'the datamodule preprocesses differently from the checkpoint ({pre.describe()} vs '
                    f'{self.preprocessing.describe()}); the datamodule is used'
                )
            self.preprocessing = pre

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Drop the frozen weights that are rebuilt from a pretrained file; record how to rebuild everything."""
        external = {f'model.{k}' for k in self.model.external_state_keys()}
        state = checkpoint['state_dict']
        for key in external:
            state.pop(key, None)
        encoder = getattr(self.model, 'encoder', None)
        checkpoint[CKPT_KEY] = {
            'format': CKPT_FORMAT,
            'model': copy.deepcopy(self.hparams.get('model')),
            'external_keys': sorted(external),
            'encoder_fingerprint': encoder.fingerprint() if hasattr(encoder, 'fingerprint') else None,
            'preprocessing': self.preprocessing.to_dict() if self.preprocessing is not None else None,
            'threshold': self.threshold_rule.to_dict(),
            'rng': self._gather_rng_states(),
        }

    def _gather_rng_states(self) -> list[dict[str, Any]]:
        """Every process's random-number states, in rank order (saved by rank 0)."""
        import torch.distributed as dist

        state = _rng_state()
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
            return [state]
        states: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(states, state)
        return states

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Check the checkpoint is for this model; restore the frozen weights, the pipeline and the RNG states."""
        info = checkpoint.get(CKPT_KEY) or {}
        saved = _saved_model_class(checkpoint)
        if saved is not None and saved.split('.')[-1] != type(self.model).__qualname__:
            raise CheckpointError(
                f'the checkpoint was trained with model {saved!r}, but this run builds {self.model_name!r}; use the '
                f'config the checkpoint was trained with'
            )
        state = checkpoint['state_dict']
        own = self.state_dict()
        fp = info.get('encoder_fingerprint')
        encoder = getattr(self.model, 'encoder', None)
        if info.get('external_keys') and fp and hasattr(encoder, 'fingerprint') and encoder.fingerprint() != fp:
            raise CheckpointError(
                f'the frozen encoder weights differ from the ones this checkpoint was trained with (fingerprint '
                f'{encoder.fingerprint()} != {fp}); point sam_checkpoint to the same SAM checkpoint used for training '
                f'({_saved_model_args(checkpoint).get("sam_checkpoint")})'
            )
        for key in info.get('external_keys', []):
            if key not in state and key in own:
                state[key] = own[key]
        if info.get('preprocessing') is not None:
            self.preprocessing = Preprocessing.from_dict(info['preprocessing'])
        unknown = [k for k in state if k not in own]
        missing = [k for k in own if k not in state]
        if unknown or missing:
            raise CheckpointError(
                f'the checkpoint does not fit {self.model_name}: missing {missing[:5]}, unexpected {unknown[:5]}; it '
                f'was probably trained with another model or options'
            )
        states = info.get('rng') or []
        if states and self._trainer is not None:
            rank = self.trainer.global_rank
            self._pending_rng = states[rank] if rank < len(states) else None

    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike[str], map_location: str | torch.device = 'cpu', **model_overrides: Any
    ) -> SegmentationTask:
        """Load a task checkpoint with one call (``weights_only=True``), in eval mode.

        Args:
            path: a ``.ckpt`` written by training or :func:`export_checkpoint`.
            map_location: device for the tensors.
            **model_overrides: replace model arguments, e.g. ``sam_checkpoint='/data/sam_vit_l_0b3195.pth'`` when
                the SAM file moved since training.
        """
        ckpt = load_checkpoint_file(path, map_location, expected='a sam_cffnet training checkpoint (.ckpt)')
        if not isinstance(ckpt, dict) or 'hyper_parameters' not in ckpt or 'state_dict' not in ckpt:
            raise CheckpointError(
                f"{path} is not a sam_cffnet training checkpoint (no hyper_parameters/state_dict); the authors' "
                f'.pth.tar files load with SAMCFFNet.from_reference_checkpoint or map --reference-checkpoint'
            )
        model = _rebuild_model(ckpt, model_overrides, path)
        hp = {k: v for k, v in dict(ckpt['hyper_parameters']).items() if not k.startswith('_')}
        known = set(inspect.signature(cls.__init__).parameters)
        task = cls(model, **{k: v for k, v in hp.items() if k in known and k != 'model'})
        task.on_load_checkpoint(ckpt)
        task.load_state_dict(ckpt['state_dict'], strict=True)
        return task.eval()


def _saved_model_class(checkpoint: dict[str, Any]) -> str | None:
    info = checkpoint.get(CKPT_KEY) or {}
    model = info.get('model', (checkpoint.get('hyper_parameters') or {}).get('model'))
    if isinstance(model, dict):
        return str(model.get('class_path'))
    return model  # format 1: the registry name


def _saved_model_args(checkpoint: dict[str, Any]) -> dict[str, Any]:
    info = checkpoint.get(CKPT_KEY) or {}
    model = info.get('model')
    if isinstance(model, dict):
        return dict(model.get('init_args') or {})
    return dict(info.get('model_args') or (checkpoint.get('hyper_parameters') or {}).get('model_args') or {})


#: Format-1 checkpoints (before the redesign) named the encoder options differently.
_FORMAT1_NAMES = {'encoder': 'variant', 'encoder_input_size': 'input_size'}


def _rebuild_model(ckpt: dict[str, Any], overrides: dict[str, Any], path: Any) -> nn.Module:
    info = ckpt.get(CKPT_KEY) or {}
    config = info.get('model') if isinstance(info.get('model'), dict) else ckpt['hyper_parameters'].get('model')
    if isinstance(config, dict):
        return build_model_from_config(config, **overrides)
    if isinstance(config, str):  # format 1: registry name + free-form model_args
        args = {
            _FORMAT1_NAMES.get(k, k): (None if v in ('None', 'null') else v) for k, v in _saved_model_args(ckpt).items()
        }
        in_channels = ckpt['hyper_parameters'].get('in_channels')
        if in_channels is not None:
            args['in_channels'] = in_channels
        return build_model(config, **{**args, **overrides})
    raise CheckpointError(f'{path} records no model configuration; it cannot be rebuilt')


def export_checkpoint(path: str | os.PathLike[str], out: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Write a self-contained copy of a training checkpoint (frozen weights included) for sharing.

    The exported file needs no SAM checkpoint to load: the model's ``sam_checkpoint`` is cleared and the full state
    dict is stored.

    Args:
        path: a checkpoint written by training (needs the SAM checkpoint it names to be readable).
        out: destination file; refused if it exists unless ``overwrite``.
        overwrite: allow replacing ``out``.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputExistsError(f'{out} exists; pass overwrite=True (--overwrite) to replace it')
    task = SegmentationTask.from_checkpoint(path)
    hp = {k: v for k, v in dict(task.hparams).items() if not k.startswith('_')}
    config = copy.deepcopy(hp.get('model'))
    if isinstance(config, dict):
        args = config.setdefault('init_args', {})
        for key in ('sam_checkpoint', 'reference_checkpoint'):
            if key in args:
                args[key] = None
    hp['model'] = config
    encoder = getattr(task.model, 'encoder', None)
    ckpt = {
        'state_dict': task.state_dict(),
        'hyper_parameters': hp,
        CKPT_KEY: {
            'format': CKPT_FORMAT,
            'model': config,
            'external_keys': [],
            'encoder_fingerprint': encoder.fingerprint() if hasattr(encoder, 'fingerprint') else None,
            'preprocessing': task.preprocessing.to_dict() if task.preprocessing is not None else None,
            'threshold': task.threshold_rule.to_dict(),
            'exported_from': os.fspath(path),
        },
    }
    tmp = out.with_name(f'.{out.name}.partial')
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, tmp)
    os.replace(tmp, out)
    return out
