"""Process memory read from Linux ``/proc``, shared by the benchmark scripts (``python benchmarks/<name>.py``)."""

from __future__ import annotations

from pathlib import Path

MIB = 1024 * 1024


def status_bytes(field: str) -> int:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``, ...) in bytes; 0 where unavailable."""
    try:
        for line in Path('/proc/self/status').read_text().splitlines():
            if line.startswith(field + ':'):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def reset_peak() -> int:
    """Reset the peak RSS (``VmHWM``, Linux >= 4.0) to the current RSS and return the current RSS in bytes."""
    try:
        Path('/proc/self/clear_refs').write_text('5')
    except OSError:
        pass
    return status_bytes('VmRSS')
