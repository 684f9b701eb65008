"""File paths of the datasets: the path type and the numeric sort order of numbered files."""

from __future__ import annotations

import os
import re
from pathlib import Path

PathLike = str | os.PathLike[str]

__all__ = ['PathLike', 'numeric_key']


def numeric_key(path: PathLike) -> tuple[int, str]:
    """Sort key using the last integer in the file stem (``image_10`` sorts after ``image_9``).

    Args:
        path: A file path.

    Returns:
        ``(number, name)``; files without a number sort first by name.
    """
    name = Path(path).stem
    nums = re.findall(r'\d+', name)
    return (int(nums[-1]) if nums else -1, name)
