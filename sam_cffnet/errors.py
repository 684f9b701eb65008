"""The errors that report a user's mistake (bad input, a missing or existing file, a wrong setting).

Every error the package raises *on purpose* about its input derives from :class:`SAMCFFNetError`, and also from the
built-in class a Python caller would expect (``ValueError``, ``FileNotFoundError``, ...), so both
``except SAMCFFNetError`` and ``except ValueError`` work. The command line prints these as one line,
``sam_cffnet: error: <message>``, and exits with status 2; any other exception is a bug and keeps its traceback
(exit status 1). Messages name the file or setting and say what was expected.
"""

from __future__ import annotations

__all__ = [
    'CheckpointError',
    'ConfigError',
    'DataError',
    'MissingFileError',
    'OutputExistsError',
    'SAMCFFNetError',
]


class SAMCFFNetError(Exception):
    """Base class of the errors that report bad input (not bugs)."""


class ConfigError(SAMCFFNetError, ValueError):
    """A setting has a value that cannot work (out of range, inconsistent with another one, unknown name)."""


class DataError(SAMCFFNetError, ValueError):
    """Data on disk cannot be used as it is (wrong layout, corrupt file, unexpected values, size mismatch)."""


class MissingFileError(SAMCFFNetError, FileNotFoundError):
    """A file or folder that a setting names does not exist."""


class OutputExistsError(SAMCFFNetError, FileExistsError):
    """An output would replace an existing file or folder and no overwrite flag was given."""


class CheckpointError(SAMCFFNetError, ValueError):
    """A file that should be a checkpoint cannot be used as one (not a checkpoint, unsafe, another model)."""
