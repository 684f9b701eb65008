"""Imports every module that registers a model (keep this list in sync when adding a model file)."""

from . import sam_cffnet  # noqa: F401
