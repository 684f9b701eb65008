"""``python -m sam_cffnet``."""

import sys

from .cli import main

if __name__ == '__main__':
    sys.exit(main())
