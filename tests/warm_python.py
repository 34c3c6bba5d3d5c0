"""A warm interpreter for the integration tests: `python` and `dvc` processes forked from a server
that has already imported the packages they use.

The integration tests start hundreds of Python processes: every `dvc` command, and every stage
that DVC runs. Each spends 1 to 2 s of CPU importing pandas, pyarrow, LightGBM or DVC before its
first line, which was most of `make test`'s time on a 2-core machine. Each test process (xdist
worker) starts one server that imports them once. A `python` shim, first on the PATH the tests
give their commands, hands each `python <script>` or `python -m <module>` run to that server with
its standard streams (the file descriptors themselves), working directory, environment and
arguments. The server forks a child that runs it as the interpreter would, and the shim
forwards signals to that child and exits as it did.

A forked child differs from a fresh interpreter in three ways, none of which the code under test
may rely on: the third-party modules above are already imported (never the project's own: each
test's copy imports its own `src`), the string hash seed is its siblings', and OpenMP read its
environment when LightGBM was loaded into the server. Tests that compare the outputs of two runs
byte for byte, that kill process groups or that check what a stage imports use the real
interpreter: `WARM_PYTHON=0` in the environment, or interpreter flags (`-c`, `-X ...`), which the
shim never forwards. Nor does it when no server answers: the run then simply starts cold.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
from pathlib import Path

# What the stages and DVC import (tests/test_stage_imports.py lists each stage's packages).
PRELOAD = (
    "numpy",
    "pandas",
    "pyarrow.parquet",
    "pyarrow.compute",
    "pydantic",
    "yaml",
    "pandera.pandas",
    "scipy.stats",
    "lightgbm",
    "dvclive",
    "matplotlib.figure",
    "matplotlib.backends.backend_agg",
    "dvc.cli",
    "dvc.cli.parser",
    "dvc.repo",
    "dvc.repo.index",
    "dvc.repo.plots",
    "dvc.repo.reproduce",
    "dvc.repo.experiments",
    "dvc.scm",
    "dvc.lock",
    "scmrepo.git",
    "dvc_s3",
    "distributed",
    "dask.dataframe",
    "lightgbm.dask",
)
# Imported by a successor server that takes over once it has them, so that the first runs need
# not wait: Evidently's import alone takes ten seconds.
PRELOAD_LATER = (
    "evidently.legacy.calculations.stattests.registry",
    "evidently.presets",
    "evidently.legacy.renderers.html_widgets",
    "evidently.legacy.utils.dashboard",
)

SHIM = """#!{python} -IS
# `python` for the integration tests: a script or -m module run goes to the warm server (tests/warm_python.py).
import array, json, os, signal, socket, sys

def cold():
    os.execv({python!r}, [{python!r}, *sys.argv[1:]])

args = sys.argv[1:]
if os.environ.get("WARM_PYTHON") == "0" or not args or args[0] == "-" or (args[0].startswith("-") and (args[0] != "-m" or len(args) < 2)):
    cold()
server = socket.socket(socket.AF_UNIX)
try:
    server.connect({address!r})
except OSError:
    cold()
request = json.dumps({{"argv": args, "cwd": os.getcwd(), "env": dict(os.environ), "executable": sys.argv[0]}}).encode()
server.sendmsg([request + b"\\n"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [0, 1, 2]))])
replies = server.makefile("r")
child = int(replies.readline() or 0)
if not child:
    cold()
for forwarded in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
    signal.signal(forwarded, lambda number, frame: os.kill(child, number))
ended = replies.readline().split()  # "exit <code>" or "signal <number>"
if ended[:1] == ["signal"]:
    signal.signal(int(ended[1]), signal.SIG_DFL)
    os.kill(os.getpid(), int(ended[1]))
os._exit(int(ended[1]) if ended[:1] == ["exit"] else 1)
"""


class WarmPython:
    """The server of one test process, and the folder whose `bin/` holds its `python` and `dvc`:
    a stand-in for the venv (`make VENV=...`) and the first entry of the tests' PATH."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.bin = folder / "bin"
        self.address = str(folder / "server.sock")
        self.bin.mkdir(parents=True, exist_ok=True)
        python = self.bin / "python"
        python.write_text(SHIM.format(python=sys.executable, address=self.address))
        dvc = self.bin / "dvc"
        dvc.write_text(f'#!/bin/sh\nexec "{python}" -m dvc "$@"\n')
        for tool in (python, dvc):
            tool.chmod(0o755)
        # The server reads nothing from its stdin: it ends when this process does (the pipe closes).
        self.server = subprocess.Popen(
            [sys.executable, "-P", __file__, self.address],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            env={name: value for name, value in os.environ.items() if name != "PYTHONPATH"},
        )

    @property
    def python(self) -> str:
        return str(self.bin / "python")

    def ready(self) -> bool:
        """Whether the server listens (until then a shim's run starts cold)."""
        return os.path.exists(self.address) and self.server.poll() is None

    def close(self) -> None:
        """End the server (and its successor) and remove the folder."""
        import shutil

        self.server.stdin.close()
        self.server.wait(timeout=30)
        shutil.rmtree(self.folder, ignore_errors=True)


def serve(address: str) -> None:
    """Import PRELOAD and listen; meanwhile a forked successor imports PRELOAD_LATER and then takes
    over the address. Fork a handler per connection until stdin closes."""
    try:  # a handler waits on its child through a pidfd (Linux 5.3): without one, every run starts cold
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):
        return
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    _import(PRELOAD)
    base_path = list(sys.path)
    listener = _listen(address)
    taken_over, successor_listens = os.pipe()
    if os.fork() == 0:  # the successor
        listener.close()
        os.close(taken_over)
        _import(PRELOAD_LATER)
        try:
            listener = _listen(address)
        except OSError:  # the session ended meanwhile and removed the folder
            os._exit(0)
        os.write(successor_listens, b"listening")
        os.close(successor_listens)
        _serve_connections(listener, base_path, None)
        os._exit(0)
    os.close(successor_listens)
    _serve_connections(listener, base_path, taken_over)


def _import(modules: tuple[str, ...]) -> None:
    import gc

    gc.disable()  # imports create objects, never garbage: collections would only cost time
    for module in modules:
        with contextlib.suppress(ImportError):
            __import__(module)
    # Out of the collector's sight: a forked child's collections would otherwise walk (and so
    # copy, page by page) every object the server imported.
    gc.freeze()
    gc.enable()


def _listen(address: str) -> socket.socket:
    listener = socket.socket(socket.AF_UNIX)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(address + ".new")
    listener.bind(address + ".new")
    listener.listen(64)
    os.rename(address + ".new", address)  # atomic: a shim connects to the old listener or to this one
    return listener


def _serve_connections(listener: socket.socket, base_path: list[str], taken_over: int | None) -> None:
    """Until stdin closes. When the successor says on `taken_over` that it listens at the address,
    the connections already queued here are still served, then this listener closes; if it ends
    without saying so, this server goes on."""
    while True:
        readable, _, _ = select.select([listener, sys.stdin, *([] if taken_over is None else [taken_over])], [], [])
        if sys.stdin in readable:
            return
        if taken_over in readable and not os.read(taken_over, 16):  # the successor ended without listening
            os.close(taken_over)
            taken_over = None
        elif taken_over in readable:
            listener.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                while True:
                    _fork_handler(listener, listener.accept()[0], base_path)
            listener.close()
            select.select([sys.stdin], [], [])
            return
        _fork_handler(listener, listener.accept()[0], base_path)


def _fork_handler(listener: socket.socket, connection: socket.socket, base_path: list[str]) -> None:
    if os.fork() == 0:
        listener.close()
        connection.setblocking(True)
        _handle(connection, base_path)  # never returns
    connection.close()


def _handle(connection: socket.socket, base_path: list[str]) -> None:
    """In a forked handler: receive the run and its streams, fork the child that runs it, report
    its pid and then how it ended; kill it if the shim goes away (killed, or its group was)."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    message, descriptors, _, _ = connection.recvmsg(1 << 20, socket.CMSG_SPACE(3 * 4))
    while not message.endswith(b"\n"):
        more = connection.recv(1 << 20)
        if not more:  # the shim went away before sending its whole request
            os._exit(0)
        message += more
    streams = [number for level, kind, data in descriptors for number in memoryview(data).cast("i")]
    request = json.loads(message)
    child = os.fork()
    if child == 0:
        connection.close()
        _run(request, streams, base_path)  # never returns
    for number in streams:
        os.close(number)
    connection.sendall(f"{child}\n".encode())
    ended = os.pidfd_open(child)
    while True:
        readable, _, _ = select.select([connection, ended], [], [])
        if ended in readable:
            _, status = os.waitpid(child, 0)
            code = os.waitstatus_to_exitcode(status)
            with contextlib.suppress(OSError):
                connection.sendall((f"signal {-code}" if code < 0 else f"exit {code}").encode() + b"\n")
            os._exit(0)
        if not connection.recv(1):  # the shim is gone
            os.kill(child, signal.SIGKILL)
            os.waitpid(child, 0)
            os._exit(0)


def _run(request: dict, streams: list[int], base_path: list[str]) -> None:
    """In the forked child: become the process `python <argv>` would have been, and run it."""
    import atexit
    import io
    import runpy
    import threading

    for target, number in enumerate(streams):
        os.dup2(number, target)
        os.close(number)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    for number in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(number, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as the interpreter sets them
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
    sys.dont_write_bytecode = bool(os.environ.get("PYTHONDONTWRITEBYTECODE"))  # read at start-up, like the above
    sys.stdin = io.TextIOWrapper(open(0, "rb", closefd=False), line_buffering=False)
    sys.stdout = io.TextIOWrapper(
        open(1, "wb", buffering=0 if unbuffered else -1, closefd=False),
        line_buffering=os.isatty(1),
        write_through=unbuffered,
    )
    sys.stderr = io.TextIOWrapper(
        open(2, "wb", buffering=0 if unbuffered else -1, closefd=False), errors="backslashreplace", line_buffering=True
    )
    sys.executable = request["executable"]
    if "numpy" in sys.modules:  # a fresh interpreter's global generator is seeded afresh; `random` reseeds itself at fork
        sys.modules["numpy"].random.seed()
    argv = request["argv"]
    extra = [os.path.abspath(entry) for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep) if entry]
    code = 0
    try:
        if argv[0] == "-m":
            sys.argv = argv[1:]
            sys.path[:] = [os.getcwd(), *extra, *base_path]
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = argv
            sys.path[:] = [os.path.dirname(os.path.abspath(argv[0])), *extra, *base_path]
            _run_script(os.path.abspath(argv[0]))
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
        if not isinstance(exit.code, int | None):
            print(exit.code, file=sys.stderr)
    except BaseException as error:
        _print_traceback(error)
        if isinstance(error, KeyboardInterrupt):
            signal.signal(signal.SIGINT, signal.SIG_DFL)  # the interpreter ends by the signal, as here
            os.kill(os.getpid(), signal.SIGINT)
        code = 1
    threading._shutdown()  # what the interpreter does at exit: wait for non-daemon threads, run atexit
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def _run_script(path: str) -> None:
    """Run a file as the interpreter runs `python <file>`: in a fresh `__main__` whose `__file__` is
    absolute while `sys.argv[0]` stays as given (runpy would set both to the same path)."""
    import builtins
    import importlib.machinery
    import types

    main = types.ModuleType("__main__")
    main.__file__, main.__cached__, main.__builtins__ = path, None, builtins
    main.__loader__ = importlib.machinery.SourceFileLoader("__main__", path)
    sys.modules["__main__"] = main
    with open(path, "rb") as source:
        code = compile(source.read(), path, "exec")
    exec(code, main.__dict__)  # noqa: S102 - running a script file is what an interpreter is for


def _print_traceback(error: BaseException) -> None:
    """The traceback the interpreter prints: from the script's frames on, without this module's or runpy's."""
    import traceback

    frames = error.__traceback__
    while frames is not None and frames.tb_frame.f_code.co_filename in (__file__, "<frozen runpy>"):
        frames = frames.tb_next
    traceback.print_exception(type(error), error, frames)


if __name__ == "__main__":
    serve(sys.argv[1])
