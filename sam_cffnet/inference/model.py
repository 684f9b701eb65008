"""The model side of whole-scene mapping: loading a trained model, its inputs, and the Lightning module that maps.

* :func:`load_mapping_model` loads a training checkpoint of this package (``SegmentationTask.from_checkpoint``) or
  one of the authors' ``.pth.tar`` files (``SAMCFFNet.from_reference_checkpoint``) with its input pipeline
  (:class:`~sam_cffnet.preprocessing.Preprocessing`) and decision rule (:class:`~sam_cffnet.thresholds.ThresholdRule`);
* :func:`window_inputs` turns raw windows into model inputs: the training ``Preprocessing`` applied as it is, then
  nodata set to 0 (bit-identical to what the datamodule feeds in training);
* :class:`MappingModule` is the ``LightningModule`` whose ``predict_step`` maps one chunk of windows to
  probabilities, so ``Trainer.predict`` brings devices, nodes, precision (``bf16-mixed``) and SLURM.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import Tensor, nn

from ..checkpoint import WEIGHT_FILE_ARGS
from ..errors import ConfigError, MissingFileError
from ..models.base import model_inputs
from ..preprocessing import Preprocessing
from ..thresholds import ThresholdRule

__all__ = ['MappingModel', 'MappingModule', 'check_model_files', 'load_mapping_model', 'set_attention', 'window_inputs']

PathLike = str | os.PathLike[str]

#: What each model-file argument of ``map`` must be (for messages).
EXPECTED = {
    'checkpoint': 'a sam_cffnet training checkpoint (.ckpt) or one written by `python -m sam_cffnet export`',
    'reference_checkpoint': WEIGHT_FILE_ARGS['reference_checkpoint'],
    'sam_checkpoint': WEIGHT_FILE_ARGS['sam_checkpoint'],
}


def check_model_files(
    checkpoint: PathLike | None = None,
    reference_checkpoint: PathLike | None = None,
    sam_checkpoint: PathLike | None = None,
    prefix: str = '',
) -> None:
    """Check the model arguments before anything is loaded (each message says what that argument expects).

    Args:
        checkpoint: our checkpoint, or ``None``.
        reference_checkpoint: the authors' checkpoint, or ``None``.
        sam_checkpoint: the SAM weights (with ``checkpoint`` only), or ``None``.
        prefix: how the arguments are named in messages (``'--'`` on the command line).

    Raises:
        ConfigError: not exactly one of ``checkpoint`` and ``reference_checkpoint``.
        MissingFileError: a named file does not exist.
    """

    def flag(name: str) -> str:
        return prefix + (name.replace('_', '-') if prefix == '--' else name)

    if (checkpoint is None) == (reference_checkpoint is None):
        raise ConfigError(
            f'give exactly one of {flag("checkpoint")} ({EXPECTED["checkpoint"]}) or '
            f'{flag("reference_checkpoint")} ({EXPECTED["reference_checkpoint"]})'
        )
    if reference_checkpoint is not None and sam_checkpoint is not None:
        raise ConfigError(
            f"{flag('sam_checkpoint')} goes with {flag('checkpoint')}: the authors' checkpoint holds the SAM encoder"
        )
    for name, value in (('checkpoint', checkpoint), ('reference_checkpoint', reference_checkpoint),
                        ('sam_checkpoint', sam_checkpoint)):  # fmt: skip
        if value is not None and not Path(value).is_file():
            what = 'is a folder' if Path(value).is_dir() else 'does not exist'
            raise MissingFileError(f'{flag(name)} {value} {what} (expected {EXPECTED[name]})')


class MappingModel(NamedTuple):
    """A model ready to map: what :func:`load_mapping_model` returns and what ``map_scene``/``map_scenes`` take.

    Pass it whole (``map_scene(load_mapping_model('best.ckpt'), 'scene.tif', 'map.tif')``); it also unpacks as
    ``model, preprocessing, rule = load_mapping_model(...)``.

    Attributes:
        model: the task (or the authors' model) in eval mode.
        preprocessing: its input pipeline.
        rule: its decision rule.
    """

    model: nn.Module
    preprocessing: Preprocessing
    rule: ThresholdRule


def unpack_model(
    model: nn.Module | MappingModel, preprocessing: Preprocessing | None, rule: ThresholdRule | None
) -> tuple[nn.Module, Preprocessing | None, ThresholdRule | None]:
    """``(model, preprocessing, rule)`` from a :class:`MappingModel` (arguments given explicitly win) or a module."""
    if isinstance(model, MappingModel):
        return model.model, preprocessing or model.preprocessing, rule or model.rule
    if isinstance(model, tuple):
        raise TypeError('pass the MappingModel that load_mapping_model returns, or a model/task (not a plain tuple)')
    return model, preprocessing, rule


def load_mapping_model(
    checkpoint: PathLike | None = None,
    reference_checkpoint: PathLike | None = None,
    sam_checkpoint: PathLike | None = None,
    map_location: str | torch.device = 'cpu',
) -> MappingModel:
    """Load a model for mapping with its input pipeline and decision rule.

    Args:
        checkpoint: A training checkpoint of this package (``.ckpt``, or an exported one).
        reference_checkpoint: Instead, one of the authors' ``{BJL,L4S,GVLM}_best.pth.tar`` (whole model; the
            authors' pipeline RGB / 255; their rule ``logit > 0.5``).
        sam_checkpoint: The SAM weights named at training time, when they moved (``checkpoint`` only).
        map_location: Device of the weights.

    Returns:
        A :class:`MappingModel` ``(model, preprocessing, rule)``, the model in eval mode: pass it to ``map_scene`` /
        ``map_scenes`` as it is.

    Raises:
        MissingFileError / CheckpointError / ConfigError: missing, unreadable or foreign checkpoint.
    """
    check_model_files(checkpoint, reference_checkpoint, sam_checkpoint)
    if reference_checkpoint is not None:
        from ..models.sam_cffnet import SAMCFFNet

        model = SAMCFFNet.from_reference_checkpoint(reference_checkpoint).to(map_location)
        return MappingModel(
            model.eval(), Preprocessing.reference(model.in_channels), ThresholdRule(0.5, on_logits=True)
        )
    from ..tasks.segmentation import SegmentationTask

    overrides = {'sam_checkpoint': os.fspath(sam_checkpoint)} if sam_checkpoint is not None else {}
    task = SegmentationTask.from_checkpoint(checkpoint, map_location=map_location, **overrides)  # type: ignore[arg-type]
    if task.preprocessing is None:
        raise ConfigError(
            f'{checkpoint}: the checkpoint records no input preprocessing (it was not trained with a sam_cffnet '
            f'datamodule); call map_scenes(..., preprocessing=Preprocessing(...)) with the bands and normalization'
        )
    return MappingModel(task.eval(), task.preprocessing, task.threshold_rule)


def set_attention(model: nn.Module, attention: str | None) -> bool:
    """Switch the attention kernel of a SAM encoder in place (``'sdpa'``: same result, less memory, faster).

    Args:
        model: a task or a model; models without a SAM encoder are left as they are.
        attention: ``'sdpa'``, ``'reference'``, or ``None`` (keep the checkpoint's).

    Returns:
        Whether a SAM encoder was switched.
    """
    if attention is None:
        return False
    net = getattr(model, 'model', model)
    encoder = getattr(net, 'encoder', None)
    if encoder is None or not hasattr(encoder, 'vit') or not hasattr(encoder, 'speed_options'):
        return False
    from ..models.encoders.attention import configure_encoder_speed

    opts = encoder.speed_options
    configure_encoder_speed(encoder, attention, opts.autocast, opts.channels_last)  # type: ignore[arg-type]
    return True


def _tensor(x: np.ndarray | Tensor, device: str | torch.device) -> Tensor:
    return (torch.from_numpy(x) if isinstance(x, np.ndarray) else x).to(device)


def window_inputs(
    preprocessing: Preprocessing,
    raw: np.ndarray | Tensor,
    dem: np.ndarray | Tensor | None = None,
    valid: np.ndarray | Tensor | None = None,
    device: str | torch.device = 'cpu',
) -> dict[str, Tensor]:
    """The model inputs of a batch of raw windows: the training pipeline itself, then nodata set to 0.

    Args:
        preprocessing: the checkpoint's input pipeline.
        raw: ``(B, C, T, T)`` raw values of the selected bands (any numeric dtype).
        dem: ``(B, K, T, T)`` raw DEM/slope values, or ``None``.
        valid: ``(B, T, T)`` 1/True where the pixel has data, 0/False for nodata (``None``: all valid).
        device: where the tensors go.

    Returns:
        ``image`` (and ``dem`` with ``dem_mode='separate'``) exactly as the datamodule delivers them in training.
    """
    batch = {'image': _tensor(raw, device)}
    if dem is not None:
        batch['dem'] = _tensor(dem, device)
    inputs = preprocessing(batch)
    if valid is not None:
        keep = _tensor(valid, device)[:, None]
        for key in ('image', 'dem'):
            if key in inputs:
                inputs[key] = inputs[key] * keep  # nodata is fed as 0 (after normalization)
    return inputs


class MappingModule(LightningModule):
    """Maps chunks of raw windows to landslide probabilities (``Trainer.predict``).

    Args:
        model: a :class:`~sam_cffnet.tasks.SegmentationTask` or a model taking ``model.input_keys`` and returning
            logits ``(B, 1, H, W)``.
        preprocessing: the input pipeline (tile size = the window size).
        compile: run the model through ``torch.compile`` (chunks are padded to ``batch_size`` so the compiled
            graph has one shape).
        batch_size: windows per chunk.

    ``predict_step`` takes a chunk (``image`` ``(n, C, T, T)`` raw, ``valid`` ``(n, T, T)``, optional ``dem``) and
    returns ``probability`` ``(n, T, T)`` float32 on the CPU, NaN where the input is nodata.
    """

    def __init__(
        self, model: nn.Module, preprocessing: Preprocessing, compile: bool = False, batch_size: int = 8
    ) -> None:
        super().__init__()
        is_task = hasattr(model, 'model') and hasattr(model, 'preprocessing')
        self.net = model.model if is_task else model
        self.keys = tuple(getattr(self.net, 'input_keys', ('image',)))
        self.pre = preprocessing
        self.compile = compile
        self.batch_size = batch_size
        self._forward: Any = None
        missing = [k for k in self.keys if k not in ('image', 'dem')]
        if missing or ('dem' in self.keys and preprocessing.dem_mode != 'separate'):
            raise ConfigError(
                f'the model needs inputs {list(self.keys)}; the preprocessing provides image'
                f'{" and dem" if preprocessing.dem_mode == "separate" else ""} (dem_mode={preprocessing.dem_mode!r})'
            )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep no weights in Lightning checkpoints (e.g. SLURM's ``hpc_ckpt`` on requeue).

        A mapping run resumes from its state folder, and the weights come from the model's own checkpoint.
        """
        checkpoint['state_dict'] = {}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Loading such a checkpoint (a requeued SLURM job) keeps the weights in memory."""
        checkpoint['state_dict'] = self.state_dict()

    def forward(self, *inputs: Tensor) -> Tensor:
        """Logits of the model (compiled on first use when ``compile``)."""
        if self._forward is None:  # kept out of the module tree (no second copy of the weights in state_dict)
            self.__dict__['_forward'] = torch.compile(self.net, dynamic=False) if self.compile else self.net
        return self._forward(*inputs)

    def probabilities(self, image: Tensor, dem: Tensor | None, valid: Tensor) -> Tensor:
        """Probabilities of windows.

        Args:
            image: ``(n, C, T, T)`` raw values.
            dem: ``(n, K, T, T)`` raw values or ``None``.
            valid: ``(n, T, T)`` bool.

        Returns:
            ``(n, T, T)`` float32 probabilities, NaN where ``valid`` is False.
        """
        n = image.shape[0]
        inputs = window_inputs(self.pre, image, dem, valid, self.device)
        dtype = next((p.dtype for p in self.net.parameters()), torch.float32)
        args = model_inputs(self.net, inputs)
        if dtype != torch.float32:  # bf16-true / 16-true: the weights were converted
            args = [a.to(dtype) for a in args]
        if self.compile and n < self.batch_size:
            args = [F.pad(a, (0, 0, 0, 0, 0, 0, 0, self.batch_size - n)) for a in args]
        logits = self(*args)[:n]
        size = inputs['image'].shape[-2:]
        if logits.shape[-2:] != size:
            logits = F.interpolate(logits.float(), size=size, mode='bilinear')
        prob = torch.sigmoid(logits[:, 0].float())
        return torch.where(valid.to(prob.device), prob, torch.full_like(prob, float('nan')))

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """One chunk -> ``{'chunk', 'keep', 'probability' (n, T, T) numpy float32, 'seconds', 'error', 'skip'}``."""
        t0 = time.perf_counter()
        image = batch['image']
        if image.shape[0] == 0 or batch.get('error') or batch.get('skip'):
            prob = np.zeros((0, *image.shape[-2:]), np.float32)
        else:
            prob = self.probabilities(image, batch.get('dem'), batch['valid']).cpu().numpy()
        seconds = time.perf_counter() - t0
        return {'chunk': batch['chunk'], 'keep': batch['keep'], 'probability': prob, 'seconds': seconds,
                'error': batch.get('error', ''), 'skip': bool(batch.get('skip'))}  # fmt: skip
