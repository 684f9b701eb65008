"""The interface every landslide segmentation model of this package follows.

A model is a plain ``nn.Module`` (no Lightning, no files, no datasets):

* ``forward(*inputs)`` takes the batch entries named by :attr:`LandslideModel.input_keys` (``('image',)`` by
  default: B x C x H x W floats), then those of :attr:`LandslideModel.optional_input_keys` present in the batch, and
  returns landslide logits B x 1 x H x W at the input size;
* frozen parts have ``requires_grad=False`` and never reach an optimizer;
* :meth:`LandslideModel.external_state_keys` lists the state-dict entries that are rebuilt from a pretrained file
  (e.g. the SAM checkpoint), so training checkpoints need not carry them;
* :func:`model_inputs` takes those inputs from a batch: the one rule for training, validation, prediction and mapping;
* :meth:`LandslideModel.training_outputs` may add auxiliary losses (e.g. HPCL-Net's contrastive loss);
* :meth:`LandslideModel.config` returns the class path and constructor arguments the model was built with (recorded
  automatically), so a checkpoint can rebuild it (:func:`~sam_cffnet.models.registry.build_model_from_config`) and
  configs show every option.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from ..errors import ConfigError

__all__ = ['LandslideModel', 'RecordsConfig', 'count_parameters', 'model_inputs']


def count_parameters(module: nn.Module) -> dict[str, int]:
    """Total, trainable and frozen parameter counts (shared tensors counted once)."""
    total = trainable = 0
    for p in module.parameters():
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return {'total': total, 'trainable': trainable, 'frozen': total - trainable}


def model_inputs(model: nn.Module, batch: Mapping[str, Any]) -> list[Tensor]:
    """The positional inputs of ``model`` taken from a batch.

    The entries named by its ``input_keys`` (default ``('image',)``), then those of its ``optional_input_keys`` present,
    in order up to the first one missing.

    Training (:meth:`LandslideModel.training_outputs`), validation, testing, prediction and mapping all feed a model
    through this function.

    Args:
        model: any model; ``input_keys``/``optional_input_keys`` are read when it has them.
        batch: ``image`` (B x C x H x W) and any other entry the model takes (e.g. ``dem`` B x K x H x W, cached
            ``features``).

    Returns:
        The tensors to pass as ``model(*inputs)``.

    Raises:
        ConfigError: the batch lacks one of ``input_keys`` (the message names the datamodule setting that adds
            ``dem``).
    """
    keys = tuple(getattr(model, 'input_keys', ('image',)))
    missing = [k for k in keys if k not in batch]
    if missing:
        raise ConfigError(
            f'{type(model).__name__} needs batch keys {list(keys)}, the datamodule gave {sorted(batch)}'
            + (" (set the datamodule's dem_mode: separate)" if 'dem' in missing else '')
        )
    inputs = [batch[k] for k in keys]
    for key in getattr(model, 'optional_input_keys', ()):  # e.g. cached encoder 'features'
        if key not in batch:
            break
        inputs.append(batch[key])
    return inputs


def _plain(value: Any, where: str) -> Any:
    """``value`` as plain YAML/JSON data (tuples become lists, paths strings)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, list | tuple):
        return [_plain(v, where) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f'{where}.{k}') for k, v in value.items()}
    raise ConfigError(f'{where}: a {type(value).__name__} cannot be written to a config (plain values only)')


def _record_config(init: Any) -> Any:
    """Wrap ``__init__`` so that the outermost call records the class and its bound arguments (``**kwargs`` merged)."""
    signature = inspect.signature(init)

    @functools.wraps(init)
    def __init__(self: RecordsConfig, *args: Any, **kwargs: Any) -> None:
        outermost = '_init_config' not in self.__dict__
        if outermost:
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            arguments = dict(bound.arguments)
            arguments.pop(next(iter(signature.parameters)))  # self
            for name, param in signature.parameters.items():
                if param.kind is inspect.Parameter.VAR_KEYWORD:
                    arguments.update(arguments.pop(name, {}))
                elif param.kind is inspect.Parameter.VAR_POSITIONAL:
                    arguments.pop(name, None)
            object.__setattr__(self, '_init_config', arguments)
        init(self, *args, **kwargs)

    __init__._records_config = True  # type: ignore[attr-defined]
    return __init__


class RecordsConfig:
    """Mixin: the outermost ``__init__`` of every subclass records its class and bound arguments.

    This lets :meth:`config` rebuild the object and show every option (used by :class:`LandslideModel` and the SAM
    encoder).
    """

    #: constructor arguments set by code, not user options (left out of :attr:`options`)
    internal_arguments: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get('__init__')
        if init is not None and not getattr(init, '_records_config', False):
            cls.__init__ = _record_config(init)  # type: ignore[method-assign]

    def recorded_arguments(self) -> dict[str, Any]:
        """The constructor arguments as given (defaults filled in, ``**kwargs`` merged), values unconverted."""
        return dict(self.__dict__.get('_init_config', {}))

    @property
    def options(self) -> dict[str, Any]:
        """The user options the object was built with (everything but :attr:`internal_arguments`), as plain data."""
        path = f'{type(self).__module__}.{type(self).__qualname__}'
        args = self.recorded_arguments()
        return {k: _plain(v, f'{path}.{k}') for k, v in args.items() if k not in self.internal_arguments}

    def config(self) -> dict[str, Any]:
        """``{'class_path': ..., 'init_args': {...}}``: how to build this object again (plain data).

        Raises:
            ConfigError: an argument is not plain data (e.g. a module passed in), so no config can rebuild it.
        """
        cls = type(self)
        path = f'{cls.__module__}.{cls.__qualname__}'
        args = self.recorded_arguments()
        return {'class_path': path, 'init_args': {k: _plain(v, f'{path}.{k}') for k, v in args.items()}}


class LandslideModel(RecordsConfig, nn.Module):
    """Base class: see the module docstring for the contract."""

    #: batch keys passed positionally to ``forward``.
    input_keys: tuple[str, ...] = ('image',)
    #: batch keys appended after ``input_keys`` while present (e.g. cached encoder ``'features'``).
    optional_input_keys: tuple[str, ...] = ()
    #: bands of the ``image`` input (every model sets it from its ``in_channels`` argument).
    in_channels: int
    #: the class whose options a model forwards through ``**kwargs`` (e.g. the SAM encoder), for argument checks
    forwards_options_to: type | None = None

    def _complete_config(self, defaults: Mapping[str, Any]) -> None:
        """Add the values of options forwarded through ``**kwargs`` and left at their defaults (e.g. the encoder's).

        This keeps :meth:`config` complete even if those defaults change later.
        """
        recorded = self.__dict__.get('_init_config')
        if recorded is not None:
            for key, value in defaults.items():
                recorded.setdefault(key, value)

    def extra_input_channels(self) -> dict[str, int]:
        """Channels of each input in :attr:`input_keys` other than ``'image'`` (e.g. ``{'dem': 1}``).

        They let example inputs be built without data (FLOP reports). Default: none.
        """
        return {}

    def external_state_keys(self) -> list[str]:
        """State-dict keys restored from a pretrained file at construction (not needed in training checkpoints)."""
        return []

    def training_outputs(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Logits and auxiliary losses for a training batch (default: no auxiliary loss).

        Args:
            batch: the batch dict (``image``, ``mask``, and any other key the model uses).

        Returns:
            ``(logits B x 1 x H x W, {name: scalar loss})``; auxiliary losses are added to the segmentation loss.
        """
        return self(*model_inputs(self, batch)), {}

    def describe(self) -> dict[str, Any]:
        """Plain facts about the model for logs and reports."""
        return {'class': type(self).__name__, **count_parameters(self)}
