"""Fixtures for the evaluation tests: the mapping tests' tiny random checkpoint (shared, session-scoped)."""

from __future__ import annotations

from inference.conftest import checkpoint, task

__all__ = ['checkpoint', 'task']
