"""The datasets' errors: a dataset root without the expected files, and files that break the expected layout."""

from __future__ import annotations

from pathlib import Path

from torchgeo.datasets import DatasetNotFoundError

from ..errors import DataError, SAMCFFNetError
from .files import PathLike

__all__ = ['DatasetLayoutError', 'LayoutNotFoundError']


class LayoutNotFoundError(DatasetNotFoundError, SAMCFFNetError):
    """The dataset root is missing or holds none of the expected files.

    A :class:`torchgeo.datasets.DatasetNotFoundError` (so code that catches torchgeo's error keeps working) whose
    message names the path that was searched and the expected on-disk layout.
    """

    def __init__(self, root: PathLike, detail: str, layout: str) -> None:
        """Build the message.

        Args:
            root: The root that was searched.
            detail: What is missing.
            layout: The expected layout (a small tree).
        """
        msg = f'Dataset not found in root={str(root)!r}: {detail}\nExpected layout:\n{layout}'
        FileNotFoundError.__init__(self, msg)


class DatasetLayoutError(DataError):
    """Files exist but do not follow the expected layout or content (raised at construction time)."""

    def __init__(self, path: PathLike, problem: str, layout: str | None = None) -> None:
        """Build the message.

        Args:
            path: The offending file or folder.
            problem: What is wrong with it.
            layout: Optional expected layout appended to the message.
        """
        msg = f'{path}: {problem}'
        if layout:
            msg += f'\nExpected layout:\n{layout}'
        super().__init__(msg)
        self.path = Path(path)
