"""``python -m sam_cffnet ...`` in a child process, without paying the 5 s import of torch and Lightning each time.

A command-line test runs the real entry point in its own process: its own argv, working folder, environment,
stdin/stdout/stderr and exit status, exactly as a user's shell would. What a fresh ``python`` would spend first is
importing torch, Lightning and the package (5-6 s on 2 cores; ~70 command-line runs in the suite). So each pytest
process starts one *zygote* (this file run as a script): a Python that has imported ``sam_cffnet`` and its commands
and then only waits. Every command is a ``fork()`` of that zygote that sets argv, folder, environment and file
descriptors and runs ``sam_cffnet.__main__`` as ``python -m`` would. Nothing of the test process leaks in: the zygote
never imported pytest, never ran a tensor operation and never saw a test's monkeypatching.

Tests about the process itself (signals, kills, locks between two processes, memory, what a bare ``python -m``
imports) start a fresh interpreter with :mod:`subprocess` instead. ``SAM_CFFNET_TESTS_FRESH_PYTHON=1`` makes every
command a fresh interpreter too (the slow way, for checking that both ways agree); so does a platform without
``fork``.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

#: Read once by torch when a fresh interpreter imports it; the zygote applies them per run instead.
_THREAD_VARIABLES = ('OMP_NUM_THREADS', 'MKL_NUM_THREADS')
#: The command line the runs stand for (what the error messages and ``CompletedProcess.args`` show).
PYTHON_M = [sys.executable, '-m', 'sam_cffnet']
_FRESH = os.environ.get('SAM_CFFNET_TESTS_FRESH_PYTHON', '') not in ('', '0') or not hasattr(os, 'fork')


def user_env(**extra: str) -> dict[str, str]:
    """This process's environment as a user's shell has it (no ``SAM_CFFNET_TRACEBACK``), plus ``extra``."""
    return {**{k: v for k, v in os.environ.items() if k != 'SAM_CFFNET_TRACEBACK'}, **extra}


def run(
    args: Sequence[str], *, cwd: str | Path, env: Mapping[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m sam_cffnet *args`` in a child process and capture its output as text.

    Args:
        args: the command line after ``python -m sam_cffnet``.
        cwd: the working folder of the run.
        env: its whole environment (``os.environ`` when None).
        timeout: seconds before the run is killed and :class:`subprocess.TimeoutExpired` raised.

    Returns:
        The exit status, stdout and stderr, as :func:`subprocess.run` with ``capture_output=True, text=True`` gives.
    """
    env = dict(os.environ if env is None else env)
    if _FRESH:
        return subprocess.run([*PYTHON_M, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)
    return _zygote().run([str(a) for a in args], cwd=str(Path(cwd).resolve()), env=env, timeout=timeout)


class _Zygote:
    """Client of one zygote process (started on first use, stopped when the test process ends)."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix='sam_cffnet_zygote_'))
        self.address = str(self.folder / 'socket')
        env = {**os.environ, 'PYTHONHASHSEED': os.environ.get('PYTHONHASHSEED', '0')}
        for name in _THREAD_VARIABLES:  # torch's own default thread count; each run sets its own from its env
            env.pop(name, None)
        self.process = subprocess.Popen(
            [sys.executable, __file__, self.address], stdin=subprocess.DEVNULL, env=env, cwd=self.folder
        )
        atexit.register(self.stop)
        self.lock = threading.Lock()

    def _connect(self) -> socket.socket:
        deadline = time.monotonic() + 120
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f'the command-line zygote exited with status {self.process.returncode}')
            try:
                client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                client.connect(self.address)
                return client
            except (FileNotFoundError, ConnectionRefusedError):
                client.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def run(
        self, args: list[str], *, cwd: str, env: dict[str, str], timeout: float
    ) -> subprocess.CompletedProcess[str]:
        with self.lock, tempfile.TemporaryDirectory(dir=self.folder) as io:
            out, err = Path(io, 'stdout'), Path(io, 'stderr')
            request = {'argv': args, 'cwd': cwd, 'env': env, 'stdout': str(out), 'stderr': str(err)}
            with self._connect() as client:
                client.sendall(json.dumps(request).encode() + b'\n')
                replies = client.makefile('r')
                pid = int(replies.readline())
                client.settimeout(timeout)
                try:
                    line = replies.readline()
                except TimeoutError:
                    os.killpg(pid, signal.SIGKILL)  # the run and its data-loader workers (its own session)
                    raise subprocess.TimeoutExpired([*PYTHON_M, *args], timeout, _read(out), _read(err)) from None
            if not line:
                raise RuntimeError('the command-line zygote went away during a run')
            return subprocess.CompletedProcess([*PYTHON_M, *args], int(line), _read(out), _read(err))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        shutil.rmtree(self.folder, ignore_errors=True)


def _read(path: Path) -> str:
    return path.read_text(errors='replace') if path.exists() else ''


_ZYGOTE: _Zygote | None = None


def _zygote() -> _Zygote:
    global _ZYGOTE
    if _ZYGOTE is None or _ZYGOTE.process.poll() is not None:
        _ZYGOTE = _Zygote()
    return _ZYGOTE


# --- the zygote side -------------------------------------------------------------------------------------------------


def _serve(address: str) -> None:
    """Import the package's commands, then fork one child per request until terminated."""
    import torch

    import sam_cffnet.cli  # torch, Lightning, jsonargparse and the training commands
    import sam_cffnet.evaluation
    import sam_cffnet.features
    import sam_cffnet.inference  # noqa: F401

    default_threads = torch.get_num_threads()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(address + '.tmp')
    server.listen(8)
    os.rename(address + '.tmp', address)  # the address appears once it listens
    server.settimeout(2)
    parent = os.getppid()
    while True:
        try:
            connection, _ = server.accept()
        except TimeoutError:
            if os.getppid() != parent:  # the test process died without stopping us (killed): go too, tidily
                Path(address).unlink(missing_ok=True)
                Path(address).parent.rmdir()
                os._exit(0)
            continue
        connection.settimeout(None)
        request = json.loads(connection.makefile('r').readline())
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            server.close()
            connection.close()
            _child(request, default_threads)  # never returns
        connection.sendall(f'{pid}\n'.encode())
        threading.Thread(target=_report_exit, args=(pid, connection), daemon=True).start()


def _report_exit(pid: int, connection: socket.socket) -> None:
    _, status = os.waitpid(pid, 0)
    try:
        connection.sendall(f'{os.waitstatus_to_exitcode(status)}\n'.encode())
    except OSError:
        pass  # the client gave up (timeout)
    connection.close()


def _child(request: dict, default_threads: int) -> None:
    """Become ``python -m sam_cffnet <argv>`` run in ``cwd`` with ``env`` and the given output files."""
    import runpy
    import traceback

    import torch

    code: int = 1
    try:
        os.setsid()  # a process group of its own, as a shell gives a command
        for fd, path, flags in (
            (0, os.devnull, os.O_RDONLY),
            (1, request['stdout'], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
            (2, request['stderr'], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
        ):
            opened = os.open(path, flags, 0o644)
            os.dup2(opened, fd)
            os.close(opened)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.chdir(request['cwd'])
        os.environ.clear()
        os.environ.update(request['env'])
        # the thread count a fresh interpreter would take from OMP_NUM_THREADS (results depend on it in the last bit)
        threads = next((os.environ[name] for name in _THREAD_VARIABLES if os.environ.get(name, '').isdigit()), '')
        torch.set_num_threads(int(threads) if threads and int(threads) > 0 else default_threads)
        sys.path[0] = request['cwd']  # ``python -m`` puts the working folder first
        sys.argv = [str(Path(__import__('sam_cffnet').__file__).with_name('__main__.py')), *request['argv']]
        try:
            runpy.run_module('sam_cffnet', run_name='__main__', alter_sys=True)
            code = 0
        except SystemExit as exit_:
            if exit_.code is None or isinstance(exit_.code, int):
                code = exit_.code or 0
            else:
                print(exit_.code, file=sys.stderr)
                code = 1
        except BaseException as error:  # what the interpreter does with an uncaught exception
            traceback.print_exc()
            code = 1
            if isinstance(error, KeyboardInterrupt):  # Python ends such a run by SIGINT
                sys.stderr.flush()
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                os.kill(os.getpid(), signal.SIGINT)
        atexit._run_exitfuncs()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


if __name__ == '__main__':
    sys.path[0] = os.getcwd()  # as ``python -m`` (not tests/): the package as installed
    _serve(sys.argv[1])
