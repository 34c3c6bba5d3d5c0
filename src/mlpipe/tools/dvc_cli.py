"""Running DVC's command line from the repository's tools (`make sweep`, `make review`, benchmarks).

The tools drive DVC through its documented CLI (and its `--json` output) rather than its
internal Python API, which changes between releases.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from mlpipe.errors import PipelineError


def dvc(
    *args: str, cwd: str | Path | None = None, env: dict[str, str] | None = None, check: bool = True, leaves_processes: bool = False
) -> str:
    """Run `dvc <args>` with this interpreter's DVC and return its standard output.

    With `check`, a non-zero exit raises a PipelineError carrying DVC's last error line. Set
    `leaves_processes` for a command that starts background processes (`dvc queue start`):
    they inherit its output, so read through pipes the call would last until they exit; the
    output goes through a temporary file instead.
    """
    command = [sys.executable, "-m", "dvc", *args]
    if leaves_processes:
        with tempfile.TemporaryFile("w+", encoding="utf-8") as output:
            done = subprocess.run(command, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT, text=True)
            output.seek(0)
            done.stdout = done.stderr = output.read()
    else:
        done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if check and done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or done.stdout.strip().splitlines() or ["no message"])[-1]
        raise PipelineError(f"`dvc {' '.join(args)}` failed: {reason}")
    return done.stdout
