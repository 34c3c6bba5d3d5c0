"""Running DVC's command line from the repository's tools (`make sweep`, `make review`, benchmarks).

The tools drive DVC through its documented CLI (and its `--json` output) rather than its
internal Python API, which changes between releases.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mlpipe.errors import PipelineError


def dvc(*args: str, cwd: str | Path | None = None, env: dict[str, str] | None = None, check: bool = True) -> str:
    """Run `dvc <args>` with this interpreter's DVC and return its standard output.

    With `check`, a non-zero exit raises a PipelineError carrying DVC's last error line.
    """
    done = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if check and done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or done.stdout.strip().splitlines() or ["no message"])[-1]
        raise PipelineError(f"`dvc {' '.join(args)}` failed: {reason}")
    return done.stdout
