"""What a config file may make the command line run: callables from known libraries only.

A config is data, but jsonargparse imports whatever a callable-typed option names (``on_fit_start: os.system`` in a
``LambdaCallback``) and Lightning then calls it. Classes (``class_path``) are already bounded: jsonargparse accepts
only subclasses of the type the option declares. Plain callables have no such bound, so the command line accepts a
callable only from the libraries below; name your own packages in the environment variable
``SAM_CFFNET_ALLOWED_CALLABLES`` (comma-separated top-level package names) to allow them.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Iterator
from typing import Any

from .errors import ConfigError

__all__ = ['ALLOWED_CALLABLE_PACKAGES', 'check_config_callables']

#: Top-level packages whose functions a config may name.
ALLOWED_CALLABLE_PACKAGES = (
    'sam_cffnet', 'torch', 'torchvision', 'torchmetrics', 'lightning', 'lightning_fabric', 'pytorch_lightning',
    'kornia', 'torchgeo', 'timm', 'segmentation_models_pytorch', 'segment_anything', 'numpy', 'math',
)  # fmt: skip

#: The environment variable that adds packages to :data:`ALLOWED_CALLABLE_PACKAGES`.
ENV_VAR = 'SAM_CFFNET_ALLOWED_CALLABLES'


def _walk(value: Any, key: str) -> Iterator[tuple[str, Any]]:
    """Every ``(dotted key, value)`` below ``value`` (namespaces, dicts, lists)."""
    items = None
    if hasattr(value, 'items') and callable(value.items) and not isinstance(value, type):
        items = value.items()
    if items is not None:
        for name, child in items:
            yield from _walk(child, f'{key}.{name}' if key else str(name))
    elif isinstance(value, list | tuple):
        for i, child in enumerate(value):
            yield from _walk(child, f'{key}[{i}]')
    else:
        yield key, value


def _target(value: Any) -> Any:
    """The function a ``functools.partial`` (nested or not) calls, else ``value``."""
    while isinstance(value, functools.partial):
        value = value.func
    return value


def _package(value: Any) -> str:
    return str(getattr(_target(value), '__module__', None) or '').split('.')[0]


def check_config_callables(config: Any, allowed: tuple[str, ...] | None = None) -> None:
    """Refuse a parsed config that holds a function from outside the allowed packages.

    Args:
        config: a parsed config (jsonargparse ``Namespace``, dict, list).
        allowed: top-level package names; default :data:`ALLOWED_CALLABLE_PACKAGES` plus those named in
            ``SAM_CFFNET_ALLOWED_CALLABLES``.

    Raises:
        ConfigError: naming the option and the function.
    """
    if allowed is None:
        extra = tuple(p.strip() for p in os.environ.get(ENV_VAR, '').split(',') if p.strip())
        allowed = ALLOWED_CALLABLE_PACKAGES + extra
    for key, value in _walk(config, ''):
        if not (inspect.isroutine(value) or isinstance(value, functools.partial)):
            continue  # classes are bounded by class_path; other values are data
        package = _package(value)
        if package not in allowed:
            target = _target(value)
            name = getattr(target, '__qualname__', None) or getattr(target, '__name__', None) or repr(target)
            raise ConfigError(
                f'{key}: {package or "?"}.{name} is refused: a config may name functions from {", ".join(allowed)} '
                f'only (a config file must not run arbitrary code); to allow your own package, list it in {ENV_VAR}'
            )
