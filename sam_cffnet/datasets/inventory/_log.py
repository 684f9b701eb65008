"""Logging helpers shared by the inventory modules: where messages and warnings about the input go."""

from __future__ import annotations

import warnings
from collections.abc import Callable

Log = Callable[[str], None]


def _info(msg: str) -> None:
    import logging

    logging.getLogger('sam_cffnet.inventory').info(msg)


def _warn(msg: str) -> None:
    warnings.warn(msg, UserWarning, stacklevel=3)
