"""Model registry: a name -> builder table, as timm and segment-anything do it.

Every model the task can train registers here (SAM-CFFNet, the decoder ablations, the baselines, TransLandSeg,
HPCL-Net), so configs name a model by string and the task, CLI and checkpoints need no special cases::

    @register_model('sam_cffnet')
    class SAMCFFNet(LandslideModel): ...

    model = build_model('sam_cffnet', encoder='vit_tiny', encoder_input_size=None)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

__all__ = ['build_model', 'get_model_class', 'list_models', 'register_model']

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
T = TypeVar('T', bound=Callable[..., nn.Module])


def register_model(name: str) -> Callable[[T], T]:
    """Class/function decorator adding a builder to the registry under ``name``."""

    def wrap(builder: T) -> T:
        if name in _REGISTRY and _REGISTRY[name] is not builder:
            raise ValueError(f'model {name!r} is already registered')
        _REGISTRY[name] = builder
        return builder

    return wrap


def _ensure_loaded() -> None:
    # Importing the models package registers everything it defines.
    from . import _all_models  # noqa: F401


def list_models() -> list[str]:
    """Names of all registered models."""
    _ensure_loaded()
    return sorted(_REGISTRY)


def get_model_class(name: str) -> Callable[..., nn.Module]:
    """The builder registered under ``name``.

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    _ensure_loaded()
    if name not in _REGISTRY:
        raise ValueError(f'unknown model {name!r}; registered models: {", ".join(sorted(_REGISTRY))}')
    return _REGISTRY[name]


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model, with a clear error for arguments it does not take."""
    builder = get_model_class(name)
    params = inspect.signature(builder).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            raise TypeError(f'model {name!r} does not take {unknown}; its arguments are {sorted(params)}')
    return builder(**kwargs)
