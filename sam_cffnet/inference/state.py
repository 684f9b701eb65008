"""The state folder of a mapping run: what makes a run resumable after a crash, SIGKILL or preemption.

Layout (a hidden folder next to the outputs; it must be on a file system every process sees)::

    .<output>.map-state/            (or <output-dir>/.map-state/)
        run.json                    what the run is: inputs, model file, settings (its fingerprint)
        lock.json                   the process running it (pid, host): a second run on the same output is refused
        scenes/0000/blocks/r0000_c0001.tif    finished blocks (+ .npz polygons)
        scenes/0000/blocks/r0000_c0001.json   the block's record: its window and the SHA-256 of its files
        scenes/0000/finalizing      claimed by the process that assembles the scene (created exclusively)
        scenes/0000/final.json      the scene's outputs are staged: the renames into place are pending or done
        scenes/0000/done.json       the scene is complete (its summary)
        scenes/0000/failed.txt      the scene failed in this attempt (the reason)
        ranks/rank00001.done        a process finished its share of this attempt
        progress/rank00001          windows done by a process in this attempt (for the progress bar)
        complete.json               every output is in place; the folder is being removed

Rules: every file is written under a temporary name and renamed, so a file that exists is complete; the outputs
themselves only appear by renames at the very end of a scene, so an unfinished run never leaves a complete-looking
output. A block counts as finished only through its record, written last: a rerun checks every record (the block's
window, the checksums of its files) and recomputes, with a warning, a block whose files are missing, truncated,
empty, changed or swapped with another's. A rerun of the same command finds a state with the same ``run.json`` and
does only the missing blocks; a state with another ``run.json`` belongs to another run and is refused unless
``--overwrite``. ``lock.json`` holds the process of the run under way: another run on the same output is refused at
once (a lock whose process is dead is taken over). At the end, ``complete.json`` is written before anything is
removed, so a run killed while removing its state is recognised as complete by the rerun, which finishes the
clean-up.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import OutputExistsError
from .raster import write_error
from .windows import Block

__all__ = ['RunLockedError', 'RunState', 'file_sha256', 'first_difference']

_BLOCK_NAME = re.compile(r'^r(\d{4,})_c(\d{4,})$')


class RunLockedError(OutputExistsError):
    """Another ``map`` run is writing the same outputs (its lock is in the state folder)."""


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with open(path, 'rb') as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def _process_start(pid: int) -> str | None:
    """Start time of a process (``/proc/<pid>/stat`` field 22; tells a reused pid apart), ``None`` where unknown."""
    try:
        text = Path(f'/proc/{pid}/stat').read_text()
    except OSError:
        return None
    return text.rsplit(')', 1)[-1].split()[19]


def _alive(pid: int, start: str | None) -> bool:
    """Whether process ``pid`` (started at ``start``) still runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    now = _process_start(pid)
    return start is None or now is None or now == start


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


def _last(blocks: Sequence[Block]) -> list[Block]:
    """The last block of a grid (its column + 1 is the number of columns), as a list (empty for no blocks)."""
    return [blocks[len(blocks) - 1]] if len(blocks) else []


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
        """Delete the whole folder, except the lock of this process (a run that starts afresh keeps its lock)."""
        if not self.root.exists():
            return
        for entry in os.listdir(self.root):
            if entry == 'lock.json' and self.holds_lock():
                continue
            path = self.root / entry
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        if not self.holds_lock():
            try:
                self.root.rmdir()
            except OSError:
                pass

    # ------------------------------------------------------------------ the lock
    @property
    def lock_file(self) -> Path:
        """``lock.json``."""
        return self.root / 'lock.json'

    def _lock_holder(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.lock_file.read_text())
        except (OSError, ValueError):
            return None

    def holds_lock(self) -> bool:
        """Whether this process holds the lock."""
        holder = self._lock_holder()
        return holder is not None and holder.get('pid') == os.getpid() and holder.get('host') == socket.gethostname()

    def acquire(self, what: str) -> None:
        """Take the lock of the state folder (created), or refuse: another run on the same output is under way.

        A lock left by a process that no longer runs on this host (killed, machine rebooted) is taken over.

        Args:
            what: the output, for the message.

        Raises:
            RunLockedError: a live process holds the lock.
            OutputWriteError: the folder cannot be written (read-only, permission denied, disk full).
        """
        missing = [self.root, *(f for f in self.root.parents if not f.exists())]
        self._created = [f for f in missing if not f.exists()]
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise write_error(err, self.root) from err
        me = {'pid': os.getpid(), 'host': socket.gethostname(), 'start': _process_start(os.getpid()),
              'since': time.strftime('%Y-%m-%d %H:%M:%S')}  # fmt: skip
        for _ in range(3):
            try:
                fd = os.open(self.lock_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._lock_holder()
                if holder is None:  # being written by its taker, or a torn file
                    try:
                        age = time.time() - self.lock_file.stat().st_mtime
                    except OSError:
                        continue
                    if age < 10:
                        time.sleep(0.2)
                        continue
                elif holder.get('pid') == os.getpid() and holder.get('host') == me['host']:
                    return
                elif holder.get('host') != me['host'] or _alive(int(holder.get('pid', -1)), holder.get('start')):
                    where = f'pid {holder.get("pid")} on {holder.get("host")}, since {holder.get("since")}'
                    raise RunLockedError(
                        f'{what}: another map run ({where}) is writing this output (lock {self.lock_file}); wait for '
                        f'it to end or stop it (rerun the same command to resume). If that process is gone, delete '
                        f'the lock file'
                    ) from None
                stale = self.lock_file.with_name(f'.lock.json.stale-{os.getpid()}')
                try:
                    os.replace(self.lock_file, stale)  # one taker wins the O_EXCL create after this
                    stale.unlink(missing_ok=True)
                except OSError:
                    pass
                continue
            except OSError as err:
                raise write_error(err, self.lock_file) from err
            with os.fdopen(fd, 'w') as fh:
                fh.write(json.dumps(me))
            return
        raise RunLockedError(f'{what}: could not take the lock {self.lock_file} (another run keeps taking it)')

    def release(self) -> None:
        """Drop this process's lock; a folder left with nothing else is removed."""
        if self.holds_lock():
            self.lock_file.unlink(missing_ok=True)
            for folder in [self.root, *getattr(self, '_created', [])[1:]]:  # and the folders the lock created
                try:
                    folder.rmdir()
                except OSError:
                    break

    # ------------------------------------------------------------------ completion
    @property
    def complete_file(self) -> Path:
        """``complete.json``."""
        return self.root / 'complete.json'

    def completed(self) -> dict[str, Any] | None:
        """``{'fingerprint', 'summaries'}`` of a run that completed (its state is being removed), or ``None``."""
        try:
            return json.loads(self.complete_file.read_text())
        except (OSError, ValueError):
            return None

    def finish(self, fingerprint: dict[str, Any] | None = None, summaries: list[dict[str, Any]] | None = None) -> None:
        """Remove the state of a complete run: ``complete.json`` first (unless there), then the rest, lock last.

        A process killed at any point of this leaves ``complete.json`` (or an empty folder), and the rerun of the same
        command finishes the clean-up (:meth:`completed`).
        """
        if fingerprint is not None and self.completed() is None:
            _write_atomic(self.complete_file, json.dumps({'fingerprint': fingerprint, 'summaries': summaries or []}))
        for entry in os.listdir(self.root) if self.root.exists() else []:
            if entry in ('complete.json', 'lock.json'):
                continue
            path = self.root / entry
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        self.complete_file.unlink(missing_ok=True)
        self.lock_file.unlink(missing_ok=True)
        try:
            self.root.rmdir()
        except OSError:
            pass

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
        """Names of the blocks of a scene that have a record (see :meth:`verify_blocks` for their check)."""
        folder = self.scene_dir(scene) / 'blocks'
        if not folder.exists():
            return set()
        return {p[:-5] for p in os.listdir(folder) if p.endswith('.json') and not p.startswith('.')}

    def record_block(self, block: Block, files: Sequence[Path]) -> None:
        """Record a block as finished: its window and the SHA-256 of its files (written after the files).

        Args:
            block: the block.
            files: its files in the block folder (``.tif``, and ``.npz`` with polygons).
        """
        record = {'window': block.window, 'files': {f.name: file_sha256(f) for f in files}}
        _write_atomic(self.block_dir(block.scene) / f'{block.name}.json', json.dumps(record))

    def verify_blocks(self, scene: int, blocks: Sequence[Block], warn: Callable[[str], Any]) -> set[str]:
        """Check every recorded block of a scene; a block that fails is removed (recomputed) with a warning.

        A block passes when its record reads, names a block of the plan with the same window, and every file it
        lists exists with the recorded SHA-256 (a truncated, empty, corrupt or swapped file fails).

        Args:
            scene: the scene.
            blocks: the scene's blocks (a sequence indexed ``row * columns + column``).
            warn: called with one line per block that fails.

        Returns:
            The names of the blocks that passed.
        """
        folder = self.scene_dir(scene) / 'blocks'
        names = self.done_blocks(scene)
        cols = max((b.col for b in _last(blocks)), default=-1) + 1
        ok: set[str] = set()
        for name in sorted(names):
            record_path = folder / f'{name}.json'
            why = None
            try:
                record = json.loads(record_path.read_text())
                match = _BLOCK_NAME.match(name)
                index = int(match.group(1)) * cols + int(match.group(2)) if match else -1
                block = blocks[index] if match and 0 <= index < len(blocks) and int(match.group(2)) < cols else None
                if block is None or block.name != name:
                    why = 'is not a block of this run'
                elif record.get('window') != block.window:
                    why = f'records the window {record.get("window")}, not {block.window}'
                elif not record.get('files') or f'{name}.tif' not in record['files']:
                    why = 'lists no block file'
                else:
                    for file_name, digest in record['files'].items():
                        path = folder / file_name
                        if not path.is_file():
                            why = f'{file_name} is missing'
                        elif path.stat().st_size == 0:
                            why = f'{file_name} is empty'
                        elif file_sha256(path) != digest:
                            why = f'{file_name} fails its checksum (truncated, corrupt or replaced)'
                        if why:
                            break
            except (OSError, ValueError, TypeError, AttributeError) as err:
                why = f'has an unreadable record ({type(err).__name__})'
            if why is None:
                ok.add(name)
                continue
            warn(f'block {name} of {folder} {why}; it is computed again')
            for path in (record_path, folder / f'{name}.tif', folder / f'{name}.npz'):
                path.unlink(missing_ok=True)
        return ok

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
