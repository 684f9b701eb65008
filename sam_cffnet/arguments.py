"""The one way every command parses its arguments: jsonargparse parsers that raise, and one line per mistake.

Every command of ``python -m sam_cffnet`` (the training subcommands through LightningCLI, and ``map``, ``evaluate``,
``extract-features``, ``configs``, ``models``, ``export``, ``report``) parses with jsonargparse and reports a wrong
option as one line (a :class:`~sam_cffnet.errors.ConfigError`: ``sam_cffnet: error: ...``, exit 2) with the option
meant where one is close, instead of the whole usage.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import inspect
import re
from collections.abc import Sequence
from typing import Any

from .errors import ConfigError

__all__ = ['PROG', 'argument_error_line', 'command_parser', 'parse_command', 'split_overrides']


#: The program name in usage lines.
PROG = 'python -m sam_cffnet'


def _accepted_names(class_path: str) -> list[str]:
    """The constructor arguments a ``class_path`` accepts (its own and those its bases take through ``**kwargs``)."""
    module, _, name = class_path.rpartition('.')
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return []
    names: list[str] = []
    for klass in getattr(cls, '__mro__', [cls]):
        init = klass.__dict__.get('__init__')
        if init is None:
            continue
        try:
            names += [p for p in inspect.signature(init).parameters if p not in ('self', 'args', 'kwargs')]
        except (TypeError, ValueError):
            continue
    return names


def _option_strings(parser: Any) -> list[str]:
    """Every option of ``parser`` and of its subcommands' parsers."""
    known = [o for action in getattr(parser, '_actions', []) for o in action.option_strings]
    for action in getattr(parser, '_actions', []):
        choices = getattr(action, 'choices', None)
        if isinstance(choices, dict):  # subcommands: their parsers' options
            for sub in choices.values():
                known += [o for a in getattr(sub, '_actions', []) for o in a.option_strings]
    return known


def argument_error_line(err: BaseException, parser: Any, prog: str | None = None) -> str:
    """One line for a parser error: the option that is wrong, what is accepted, and a "did you mean" where one is close.

    jsonargparse's own report is the whole usage plus a nested explanation.

    Args:
        err: the parser's ``ArgumentError``.
        parser: the parser that raised it.
        prog: the command for the "--help" hint (default: the parser's).

    Returns:
        The line (without the ``sam_cffnet: error:`` prefix).
    """
    text = str(err)
    prog = prog or getattr(parser, 'prog', PROG)
    unknown = re.search(r"Option '([^']+)' is not accepted", text)
    class_path = re.search(r"given class_path '([^']+)'", text)
    key = re.search(r'Parser key "([^"]+)"', text)
    if unknown and class_path:
        option, cls = unknown.group(1), class_path.group(1)
        close = difflib.get_close_matches(option, _accepted_names(cls), n=1)
        where = f'--{key.group(1)}.init_args.{option}' if key else option
        hint = f'; did you mean {close[0]!r}?' if close else ''
        return f'{where}: {cls.rpartition(".")[2]} has no option {option!r}{hint}'
    unrecognized = re.search(r'unrecognized arguments?: (\S+)', text, re.IGNORECASE)
    if unrecognized:
        option = unrecognized.group(1)
        close = difflib.get_close_matches(option.split('=')[0], _option_strings(parser), n=1)
        hint = f'; did you mean {close[0]}?' if close else ''
        return f'unknown option {option}{hint} (list the options: {prog} --help)'
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    detail = ' '.join(line for line in lines if not line.startswith(('usage:', 'tip:'))) or text
    return f'{detail} (see {prog} --help)'


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the line breaks of a command's examples (epilog)."""


def command_parser(command: str, description: str, epilog: str | None = None) -> Any:
    """A jsonargparse parser for ``python -m sam_cffnet <command>`` that raises on a mistake.

    See :func:`parse_command`.

    Args:
        command: the command's name (for usage lines).
        description: what the command does.
        epilog: examples printed after the options (line breaks kept).

    Returns:
        A ``jsonargparse.ArgumentParser``.
    """
    from jsonargparse import ArgumentParser, DefaultHelpFormatter

    class Formatter(DefaultHelpFormatter, _Formatter):
        """jsonargparse's help with the examples' lines kept."""

    return ArgumentParser(
        prog=f'{PROG} {command}', description=description, epilog=epilog, formatter_class=Formatter,
        exit_on_error=False, allow_abbrev=False,
    )  # fmt: skip


def parse_command(parser: Any, argv: Sequence[str] | None) -> Any:
    """Parse ``argv`` with a :func:`command_parser`.

    Args:
        parser: the parser.
        argv: the command's arguments (``None``: the command line).

    Returns:
        The parsed namespace.

    Raises:
        ConfigError: a wrong option or value, as one line naming it.
    """
    from jsonargparse import ArgumentError

    try:
        return parser.parse_args(None if argv is None else list(argv))
    except ArgumentError as err:
        raise ConfigError(argument_error_line(err, parser)) from None


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def split_overrides(
    parser: Any, argv: Sequence[str], own_prefixes: tuple[str, ...] = ()
) -> tuple[list[str], list[str]]:
    """``argv`` split into the options of ``parser`` and the rest, each option with the values that follow it.

    The rest are config overrides such as ``--model.*`` for the training CLI's parser.

    Args:
        parser: the command's parser.
        argv: the command's arguments.
        own_prefixes: option prefixes that belong to ``parser`` too (nested options such as ``--encoder.``).

    Returns:
        ``(own, rest)``.

    Raises:
        ConfigError: an option close to one of the command's own (``--outptu`` for ``--output``).
    """
    own_options = set(_option_strings(parser))
    for token in argv:  # a near miss of the command's own option is a typo, not a config override
        name = token.split('=', 1)[0]
        if name.startswith('--') and name not in own_options and not name.startswith(own_prefixes):
            close = difflib.get_close_matches(name, sorted(own_options), n=1, cutoff=0.8)
            if close:
                raise ConfigError(f'unknown option {name}; did you mean {close[0]}? (list the options: '
                                  f'{getattr(parser, "prog", PROG)} --help)')  # fmt: skip
    own: list[str] = []
    rest: list[str] = []
    target = own
    for token in argv:
        if token.startswith('-') and not _is_number(token):
            name = token.split('=', 1)[0]
            mine = name in own_options or name.startswith(own_prefixes) or not name.startswith('--')
            target = own if mine else rest
        target.append(token)
    return own, rest
