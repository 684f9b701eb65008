"""Model registry: a name -> class table, as timm and segment-anything do it.

Every model the task can train registers here (SAM-CFFNet, the decoder ablations, the baselines, TransLandSeg,
HPCL-Net). This module imports no model file: ``sam_cffnet/models/__init__.py`` imports them all (timm's way), so
importing anything under ``sam_cffnet.models`` registers every model::

    @register_model('sam_cffnet')
    class SAMCFFNet(LandslideModel): ...

    model = build_model('sam_cffnet', variant='vit_tiny', input_size=None)
    again = build_model_from_config(model.config())

Configs name models by class (``class_path: sam_cffnet.models.SAMCFFNet``, or the bare class name); the registry
names are what ``python -m sam_cffnet models`` lists next to them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from torch import nn

from ..errors import ConfigError

__all__ = [
    'build_model',
    'build_model_from_config',
    'get_model_class',
    'list_models',
    'model_options',
    'model_table',
    'register_model',
]

_REGISTRY: dict[str, type[nn.Module]] = {}
T = TypeVar('T', bound=type[nn.Module])


def register_model(name: str) -> Callable[[T], T]:
    """Class decorator adding a model class to the registry under ``name``."""

    def wrap(cls: T) -> T:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ConfigError(f'model {name!r} is already registered')
        _REGISTRY[name] = cls
        return cls

    return wrap


def list_models() -> list[str]:
    """Names of all registered models."""
    return sorted(_REGISTRY)


def model_table() -> list[tuple[str, str]]:
    """``(registry name, class path)`` of every registered model."""
    return [(name, f'{cls.__module__}.{cls.__qualname__}') for name, cls in sorted(_REGISTRY.items())]


def get_model_class(name: str) -> type[nn.Module]:
    """The class registered under ``name`` (a registry name, a class name or a full class path).

    Only registered classes are returned, so a class path read from a checkpoint file can name nothing else.

    Raises:
        ConfigError: unknown name (the message lists the known ones).
    """
    if name in _REGISTRY:
        return _REGISTRY[name]
    for cls in _REGISTRY.values():
        if name in (cls.__qualname__, f'{cls.__module__}.{cls.__qualname__}'):
            return cls
    public = {f'sam_cffnet.models.{cls.__qualname__}': cls for cls in _REGISTRY.values()}
    if name in public:
        return public[name]
    raise ConfigError(f'unknown model {name!r}; registered models: {", ".join(sorted(_REGISTRY))}')


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model, with a clear error for arguments it does not take."""
    cls = get_model_class(name)
    accepted = model_options(cls)
    if accepted is not None:
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown:
            raise ConfigError(f'model {name!r} does not take {unknown}; its arguments are {sorted(accepted)}')
    return cls(**kwargs)


def model_options(cls: type[nn.Module]) -> list[str] | None:
    """Every argument a model class takes, including the options it forwards through ``**kwargs``.

    Those go to the class named by its ``forwards_options_to`` attribute (the SAM encoder's); ``None`` when that cannot
    be known.
    """
    names: list[str] = []
    for name, param in inspect.signature(cls).parameters.items():
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            target = getattr(cls, 'forwards_options_to', None)
            if target is None:
                return None
            internal = set(getattr(target, 'internal_arguments', ()))
            names += [n for n in inspect.signature(target).parameters if n not in internal and n not in names]
        elif param.kind is not inspect.Parameter.VAR_POSITIONAL:
            names.append(name)
    return names


def build_model_from_config(config: Mapping[str, Any], **overrides: Any) -> nn.Module:
    """Build a model from :meth:`LandslideModel.config` output (``{'class_path', 'init_args'}``).

    Args:
        config: the class path (a registered class) and its arguments.
        **overrides: arguments replaced, e.g. ``sam_checkpoint='/data/sam_vit_l_0b3195.pth'`` when the file moved.
    """
    if 'class_path' not in config:
        raise ConfigError(f'a model config needs class_path and init_args, got keys {sorted(config)}')
    return build_model(str(config['class_path']), **{**dict(config.get('init_args') or {}), **overrides})
