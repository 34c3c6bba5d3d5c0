"""The warm interpreter (tests/warm_python.py) runs a script or module as a fresh interpreter
does: the same arguments, import path, working directory, environment, streams, exit status,
traceback and death by signal. The integration tests' processes rely on it."""

import signal
import subprocess
import sys
import time

import pytest

from conftest import tool_env, warm_python

SCRIPT = """
import json, os, sys
print(json.dumps({
    "argv": sys.argv, "path": sys.path[:3], "cwd": os.getcwd(), "variable": os.environ.get("SEEN"),
    "stdin": sys.stdin.read(), "executable_runs": os.access(sys.executable, os.X_OK), "main": __name__,
}))
print("to stderr", file=sys.stderr)
ending = sys.argv[1]
if ending == "exit":
    sys.exit(3)
if ending == "raise":
    def deeper():
        raise ValueError("boom")
    deeper()
if ending == "signal":
    os.kill(os.getpid(), 15)
"""


@pytest.fixture(scope="module")
def warm() -> str:
    server = warm_python()
    deadline = time.monotonic() + 60
    while not server.ready() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.ready(), "the warm server did not start"
    return server.python


def run(python: str, folder, *args: str) -> subprocess.CompletedProcess:
    env = {**tool_env(), "SEEN": "yes", "PYTHONPATH": "lib"}
    return subprocess.run([python, *args], cwd=folder, env=env, input="sent on stdin", capture_output=True, text=True)


@pytest.mark.parametrize("ending", ["normal", "exit", "raise", "signal"])
def test_a_script_runs_as_in_a_fresh_interpreter(warm, tmp_path, ending):
    (tmp_path / "lib").mkdir()
    (tmp_path / "script.py").write_text(SCRIPT)
    fresh, forked = (run(python, tmp_path, "script.py", ending) for python in (sys.executable, warm))
    assert (forked.returncode, forked.stdout) == (fresh.returncode, fresh.stdout)
    assert forked.stderr == fresh.stderr
    assert forked.returncode == {"normal": 0, "exit": 3, "raise": 1, "signal": -signal.SIGTERM}[ending]


def test_a_module_runs_as_in_a_fresh_interpreter(warm, tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "tool.py").write_text(SCRIPT)
    fresh, forked = (run(python, tmp_path, "-m", "tool", "exit") for python in (sys.executable, warm))
    assert (forked.returncode, forked.stdout, forked.stderr) == (fresh.returncode, fresh.stdout, fresh.stderr)
    assert '"main": "__main__"' in forked.stdout and "lib/tool.py" in forked.stdout


def test_a_signal_to_the_shim_reaches_the_run(warm, tmp_path):
    (tmp_path / "wait.py").write_text("import time\nprint('waiting', flush=True)\ntime.sleep(60)\n")
    process = subprocess.Popen([warm, "wait.py"], cwd=tmp_path, env=tool_env(), stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "waiting\n"
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == -signal.SIGTERM and time.monotonic() - started < 30
