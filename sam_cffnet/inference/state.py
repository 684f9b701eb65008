"""The state folder of a mapping run: what makes a run resumable after a crash, SIGKILL or preemption.

Layout (a hidden folder next to the outputs; it must be on a file system every process sees)::

    .<output>.map-state/            (or <output-dir>/.map-state/)
        run.json                    what the run is: inputs, model file, settings (its fingerprint)
        scenes/0000/blocks/r0000_c0001.tif    finished blocks (+ .npz polygons); a file that exists is complete
        scenes/0000/finalizing      claimed by the process that assembles the scene (created exclusively)
        scenes/0000/final.json      the scene's outputs are staged: the renames into place are pending or done
        scenes/0000/done.json       the scene is complete (its summary)
        scenes/0000/failed.txt      the scene failed in this attempt (the reason)
        ranks/rank00001.done        a process finished its share of this attempt
        progress/rank00001          windows done by a process in this attempt (for the progress bar)

Rules: every file is written under a temporary name and renamed, so a file that exists is complete; the outputs
themselves only appear by renames at the very end of a scene, so an unfinished run never leaves a complete-looking
output. A rerun of the same command finds a state with the same ``run.json`` and does only the missing blocks; a
state with another ``run.json`` belongs to another run and is refused unless ``--overwrite``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from .raster import write_error

__all__ = ['RunState', 'first_difference']


def first_difference(old: Any, new: Any, where: str = '') -> str | None:
    """The first place where two JSON values differ (``'settings.overlap: 16 != 32'``), or ``None``."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            found = first_difference(old.get(key), new.get(key), f'{where}.{key}' if where else str(key))
            if found:
                return found
        return None
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            found = first_difference(a, b, f'{where}[{i}]')
            if found:
                return found
        return None
    return None if old == new else f'{where or "run"}: {old!r} != {new!r}'


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f'.{path.name}.tmp-{os.getpid()}')
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise write_error(err, path) from err


class RunState:
    """The state folder of one run (see the module docstring).

    Args:
        root: the folder.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    # ------------------------------------------------------------------ the run
    @property
    def run_file(self) -> Path:
        """``run.json``."""
        return self.root / 'run.json'

    def exists(self) -> bool:
        """Whether a state folder is there."""
        return self.root.exists()

    def recorded(self) -> dict[str, Any] | None:
        """The recorded fingerprint, or ``None`` (no state, or one that never got its ``run.json``)."""
        try:
            return json.loads(self.run_file.read_text())
        except (OSError, ValueError):
            return None

    def difference(self, fingerprint: dict[str, Any]) -> str | None:
        """``None`` when the state belongs to the run ``fingerprint`` describes, else what differs."""
        recorded = self.recorded()
        if recorded is None:
            if not (self.root / 'scenes').exists():
                return None  # stopped before its run.json was written: nothing to lose, nothing to mix up
            return f'{self.run_file} is missing or unreadable'
        return first_difference(recorded, json.loads(json.dumps(fingerprint)))

    def create(self, fingerprint: dict[str, Any]) -> None:
        """Create the folder and ``run.json`` (replacing nothing that exists)."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise write_error(err, self.root) from err
        if not self.run_file.exists():
            _write_atomic(self.run_file, json.dumps(fingerprint, indent=1, sort_keys=True))

    def remove(self) -> None:
        """Delete the whole folder."""
        shutil.rmtree(self.root, ignore_errors=True)

    def start_attempt(self) -> None:
        """Clear what belongs to one attempt (claims, failures, rank markers, progress) before a (re)start."""
        for sub in ('ranks', 'progress'):
            shutil.rmtree(self.root / sub, ignore_errors=True)
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        scenes = self.root / 'scenes'
        if scenes.exists():
            for folder in scenes.iterdir():
                if not (folder / 'final.json').exists():
                    (folder / 'finalizing').unlink(missing_ok=True)
                (folder / 'failed.txt').unlink(missing_ok=True)

    # ------------------------------------------------------------------ scenes and blocks
    def scene_dir(self, scene: int) -> Path:
        """Folder of scene ``scene``."""
        return self.root / 'scenes' / f'{scene:04d}'

    def block_dir(self, scene: int) -> Path:
        """Folder of the finished blocks of scene ``scene`` (created)."""
        folder = self.scene_dir(scene) / 'blocks'
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def done_blocks(self, scene: int) -> set[str]:
        """Names of the finished blocks of a scene."""
        folder = self.scene_dir(scene) / 'blocks'
        if not folder.exists():
            return set()
        return {p[:-4] for p in os.listdir(folder) if p.endswith('.tif') and not p.startswith('.')}

    def claim_finalization(self, scene: int) -> bool:
        """Claim the assembly of a scene; exactly one caller gets ``True``."""
        try:
            fd = os.open(self.scene_dir(scene) / 'finalizing', os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        os.close(fd)
        return True

    def staged_dir(self, scene: int) -> Path:
        """Where a scene's outputs are written before they are renamed into place (created)."""
        folder = self.scene_dir(scene) / 'staged'
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def mark_final(self, scene: int, moves: list[tuple[str, str]], summary: dict[str, Any]) -> None:
        """Record that a scene's outputs are staged and will be renamed into place."""
        _write_atomic(self.scene_dir(scene) / 'final.json', json.dumps({'moves': moves, 'summary': summary}))

    def final(self, scene: int) -> dict[str, Any] | None:
        """The staged outputs of a scene (``moves``, ``summary``), or ``None``."""
        try:
            return json.loads((self.scene_dir(scene) / 'final.json').read_text())
        except (OSError, ValueError):
            return None

    def mark_done(self, scene: int, summary: dict[str, Any]) -> None:
        """Record that a scene is complete."""
        _write_atomic(self.scene_dir(scene) / 'done.json', json.dumps(summary, indent=1))

    def done(self, scene: int) -> dict[str, Any] | None:
        """The summary of a complete scene, or ``None``."""
        try:
            return json.loads((self.scene_dir(scene) / 'done.json').read_text())
        except (OSError, ValueError):
            return None

    def mark_failed(self, scene: int, reason: str) -> None:
        """Record that a scene failed in this attempt (the first reason is kept)."""
        path = self.scene_dir(scene) / 'failed.txt'
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            _write_atomic(path, reason)

    def failed(self, scene: int) -> str | None:
        """Why a scene failed in this attempt, or ``None``."""
        try:
            return (self.scene_dir(scene) / 'failed.txt').read_text()
        except OSError:
            return None

    # ------------------------------------------------------------------ processes
    def mark_rank(self, rank: int, status: str, info: dict[str, Any]) -> None:
        """Record that process ``rank`` ended this attempt (``status``: ``'done'`` or ``'failed'``)."""
        _write_atomic(self.root / 'ranks' / f'rank{rank:05d}.{status}', json.dumps(info))

    def wait_for_ranks(self, world_size: int, poll: float = 0.2) -> dict[int, tuple[str, dict[str, Any]]]:
        """Wait until every process has marked its end; returns ``{rank: (status, info)}``."""
        folder = self.root / 'ranks'
        while True:
            found: dict[int, tuple[str, dict[str, Any]]] = {}
            for name in os.listdir(folder) if folder.exists() else []:
                if name.startswith('rank') and not name.startswith('.'):
                    stem, _, status = name.partition('.')
                    try:
                        found[int(stem[4:])] = (status, json.loads((folder / name).read_text()))
                    except (OSError, ValueError):
                        continue
            if len(found) >= world_size:
                return found
            time.sleep(poll)

    def write_progress(self, rank: int, windows: int) -> None:
        """Record the windows process ``rank`` has done in this attempt."""
        try:
            _write_atomic(self.root / 'progress' / f'rank{rank:05d}', str(windows))
        except OSError:
            pass  # progress is informative only

    def read_progress(self) -> int:
        """Windows done by all processes in this attempt."""
        folder = self.root / 'progress'
        total = 0
        for name in os.listdir(folder) if folder.exists() else []:
            if not name.startswith('.'):
                try:
                    total += int((folder / name).read_text() or 0)
                except (OSError, ValueError):
                    continue
        return total
