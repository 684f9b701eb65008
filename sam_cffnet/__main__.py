"""``python -m sam_cffnet`` and the ``sam-cffnet`` script.

``--version`` and ``configs`` answer without importing torch or Lightning (a second, not six); every other command
goes to :func:`sam_cffnet.cli.main`.
"""

from __future__ import annotations

import os
import sys


def main() -> int:
    """Run the command line; returns the exit status (output piped into ``head`` ends quietly)."""
    try:
        return _main(sys.argv[1:])
    except BrokenPipeError:  # the reader went away (``| head``): stop without a traceback, as other tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _main(argv: list[str]) -> int:
    if argv[:1] in (['--version'], ['-V']):
        from . import __version__

        print(f'sam_cffnet {__version__}')
        return 0
    if argv[:1] == ['configs']:
        from .errors import SAMCFFNetError
        from .recipes import configs_command

        try:
            return configs_command(argv[1:])
        except SAMCFFNetError as err:
            print(f'sam_cffnet: error: {err}', file=sys.stderr)
            return 2
    from .cli import main as cli_main

    return cli_main()


if __name__ == '__main__':
    sys.exit(main())
