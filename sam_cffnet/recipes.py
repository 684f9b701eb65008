"""The recipes shipped with the package (``sam_cffnet/configs/*.yaml``): list them and resolve a bare name.

``--config bijie.yaml`` works after ``pip install`` without a checkout: a name that is not an existing path is looked
up among the shipped recipes (with or without ``.yaml`` and a leading ``configs/``).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ['configs_command', 'resolve_config', 'shipped_config_dir', 'shipped_configs']


def shipped_config_dir() -> Path:
    """The folder of recipes shipped inside the package (the repository's ``configs/`` links to it)."""
    return Path(str(resources.files('sam_cffnet') / 'configs'))


def shipped_configs() -> list[str]:
    """Names of the shipped recipes, relative to :func:`shipped_config_dir`."""
    root = shipped_config_dir()
    return sorted(str(p.relative_to(root)) for p in root.rglob('*.yaml'))


def resolve_config(name: str) -> str:
    """A config path: ``name`` itself if it exists, else the shipped recipe of that name, else ``name`` unchanged.

    The recipe's name may come with or without ``.yaml`` / a leading ``configs/``. An unchanged ``name`` is then
    reported missing by the parser.
    """
    if Path(name).exists():
        return name
    root = shipped_config_dir()
    stem = name[len('configs/') :] if name.startswith('configs/') else name
    for candidate in (stem, f'{stem}.yaml'):
        path = root / candidate
        if path.is_file():
            return str(path)
    return name


def configs_command(argv: list[str]) -> int:
    """``python -m sam_cffnet configs``: print the shipped recipes (imports neither torch nor Lightning).

    Args:
        argv: the arguments after ``configs`` (only ``--help``).

    Returns:
        The exit code, 0.
    """
    from .arguments import command_parser, parse_command

    parse_command(command_parser('configs', 'List the shipped recipes.'), argv)
    print(f'Recipes shipped in {shipped_config_dir()} (use the name with --config):')
    for name in shipped_configs():
        print(f'  {name}')
    return 0
