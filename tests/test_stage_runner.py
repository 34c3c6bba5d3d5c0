"""What every stage gets from `run_stage`: outputs written all or nothing, params that must not
change under a running stage, and a write failure reported as one line."""

import os
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest

from conftest import ROOT
from mlpipe.errors import ConfigError, OutputError
from mlpipe.io import atomic_dir, output_transaction, write_parquet, write_text

# A stage that, once its params are read, signals it (a file), waits for the test's signal, then
# writes two outputs. Saved as demo.py: the harness names a stage after its file.
WAITING_STAGE = textwrap.dedent("""
    import time
    from pathlib import Path
    import pandas as pd
    from mlpipe.harness import log_written, run_stage
    from mlpipe.io import write_parquet, write_text

    def run(params, log, *, go: Path, out: Path, rows: int):
        Path(out, "ready").write_text("")
        while not go.exists():
            time.sleep(0.01)
        log_written(log, write_text("model", out / "model.txt"), write_parquet(pd.DataFrame({"x": range(rows)}), out / "table.parquet"))

    run_stage(run)
""")


def start_stage(tmp_path, rows: int = 10, limit_bytes: int | None = None) -> tuple[subprocess.Popen, dict]:
    params = tmp_path / "params.yaml"
    if not params.exists():
        params.write_text((ROOT / "params.yaml").read_text())
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    paths = {"params": params, "go": tmp_path / "go", "out": out}

    def limit_file_size():
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    script = tmp_path / "demo.py"
    script.write_text(WAITING_STAGE)
    process = subprocess.Popen(
        [sys.executable, str(script), "--params", str(params), "--go", str(paths["go"]), "--out", str(out), "--rows", str(rows)],
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=limit_file_size if limit_bytes else None,
    )
    deadline = time.monotonic() + 60
    while not (out / "ready").exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the stage never read its params"
        time.sleep(0.01)
    (out / "ready").unlink()
    return process, paths


def finish(process: subprocess.Popen, paths: dict) -> tuple[int, str, str]:
    paths["go"].write_text("")
    stdout, stderr = process.communicate(timeout=60)
    return process.returncode, stdout, stderr


def outputs(paths) -> list[str]:
    return sorted(path.name for path in paths["out"].iterdir())


def test_params_changed_while_a_stage_runs_fail_it_and_nothing_is_written(tmp_path):
    process, paths = start_stage(tmp_path)
    text = paths["params"].read_text()
    paths["params"].write_text(text.replace("learning_rate: 0.05", "learning_rate: 0.2"))
    code, stdout, stderr = finish(process, paths)
    assert code == 1 and outputs(paths) == []
    assert stderr.strip() == (
        "error: demo: params changed while the stage ran (params.yaml: train.learning_rate 0.05 -> 0.2); "
        "nothing was written: run it again (queue experiments with `dvc exp run --queue` to edit params "
        "while others run)"
    )
    assert "wrote" not in stdout


def test_a_comment_edited_while_a_stage_runs_changes_nothing(tmp_path):
    process, paths = start_stage(tmp_path)
    paths["params"].write_text(paths["params"].read_text() + "\n# a note added while the stage ran\n")
    code, stdout, stderr = finish(process, paths)
    assert (code, stderr) == (0, "") and outputs(paths) == ["model.txt", "table.parquet"]
    assert "wrote" in stdout and "table.parquet (10 rows" in stdout


def test_a_file_size_limit_hit_while_writing_is_one_line_and_leaves_nothing(tmp_path):
    process, paths = start_stage(tmp_path, rows=200_000, limit_bytes=100_000)
    code, stdout, stderr = finish(process, paths)
    assert code == 1 and outputs(paths) == []  # the small output written first is not put in place either
    assert stderr.startswith(f"error: demo: cannot write '{paths['out'] / 'table.parquet'}': File too large;")
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr


def test_outputs_are_put_in_place_together_or_not_at_all(tmp_path):
    write_text("old", tmp_path / "a.txt")

    def refuse():
        raise ConfigError("refused at the last moment")

    with pytest.raises(ConfigError):
        with output_transaction(before_commit=refuse):
            write_text("new", tmp_path / "a.txt")
            write_parquet(pd.DataFrame({"x": [1]}), tmp_path / "b.parquet")
            with atomic_dir(tmp_path / "plots") as folder:
                (folder / "p.json").write_text("{}")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.txt"] and (tmp_path / "a.txt").read_text() == "old"

    with output_transaction():
        write_text("new", tmp_path / "a.txt")
        assert (tmp_path / "a.txt").read_text() == "old"  # not yet
        write_parquet(pd.DataFrame({"x": [1]}), tmp_path / "b.parquet")
    assert (tmp_path / "a.txt").read_text() == "new" and (tmp_path / "b.parquet").exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.txt", "b.parquet"]


def test_a_write_where_no_folder_can_be_made_is_an_output_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match=r"cannot write '.*file/sub/a.txt': Not a directory; free disk space"):
        write_text("x", tmp_path / "file" / "sub" / "a.txt")


def test_a_reader_that_stops_reading_leaves_stderr_clean_and_the_stage_finishes(tmp_path):
    """`dvc repro | head`: the log pipe closes early; no traceback per log line, outputs written."""
    process, paths = start_stage(tmp_path)
    process.stdout.close()  # the reader goes away before the stage logs anything
    paths["go"].write_text("")
    stderr = process.stderr.read()
    assert process.wait(timeout=60) == 0
    assert stderr == ""
    assert outputs(paths) == ["model.txt", "table.parquet"]
