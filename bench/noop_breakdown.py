"""Where a no-op `dvc repro` of this pipeline spends its time beyond a toy pipeline's. (A benchmark, not a test.)

Issue 13 compares this pipeline's no-op `dvc repro` with a toy pipeline of as many stages (each
`cat`s the previous output, one file dependency and one params key per stage). This script times,
side by side and interleaved, this pipeline and four toys that close the gap one difference at a
time:

1. the plain toy, as `bench/pipeline_overhead.py` builds it;
2. the toy with this pipeline's `params.yaml` and each stage's params keys;
3. the toy with each stage's code and data dependencies (copies of the same files, as many per
   stage as `dvc.yaml` lists: DVC checks every one on every run);
4. the toy with both;

and, beside them, this pipeline with its code dependencies declared per part folder
(`src/mlpipe/data` instead of each module of it, issue 29): its no-op time and its dvc.lock's size
against the per-module declaration's.

A snapshot of the repository is reproduced once first (every stage runs), so its no-op has
outputs to check. Writes bench/results/noop_breakdown.{json,md}.

    .venv/bin/python bench/noop_breakdown.py      # about two minutes
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
from pathlib import Path

import yaml

from mlpipe.tools.workspace import snapshot_repository

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline_overhead import REPO, checked, machine_facts, measure, scratch_folder, write_results  # noqa: E402  (shared, not copied)
from serving import _commit  # noqa: E402

VARIANTS = {
    "toy": (False, False),
    "toy + this params.yaml and keys": (True, False),
    "toy + this pipeline's dependencies": (False, True),
    "toy + both": (True, True),
}


def build_toy(folder: Path, pipeline: Path, with_params: bool, with_deps: bool, env: dict[str, str]) -> Path:
    """A pipeline of `cat` stages shaped like `pipeline`'s dvc.yaml as far as the flags say."""
    stages = yaml.safe_load((pipeline / "dvc.yaml").read_text())["stages"]
    locked = yaml.safe_load((pipeline / "dvc.lock").read_text())["stages"]  # dependencies with ${...} resolved
    names = [name for name, stage in stages.items() if stage.get("deps")]  # the stages that run on every repro
    folder.mkdir(parents=True)
    (folder / "in.txt").write_text("x\n")
    toy_params = "".join(f"s{i}:\n  value: {i}\n" for i in range(1, len(names) + 1))
    (folder / "params.yaml").write_text(((pipeline / "params.yaml").read_text() + "\n" if with_params else "") + toy_params)
    toy_stages = {}
    for i, name in enumerate(names, start=1):
        deps = ["in.txt" if i == 1 else f"out{i - 1}.txt"]
        if with_deps:
            for dep in (entry["path"] for entry in locked[name]["deps"]):
                copy = Path("deps") / name / dep
                source = pipeline / dep
                (folder / copy).parent.mkdir(parents=True, exist_ok=True)
                if source.is_dir():
                    shutil.copytree(source, folder / copy)
                else:
                    shutil.copy2(source, folder / copy)
                deps.append(str(copy))
        params = [*stages[name].get("params", []), f"s{i}.value"] if with_params else [f"s{i}.value"]
        toy_stages[name] = {
            "cmd": f"cat {deps[0]} > out{i}.txt",
            "deps": deps,
            "params": params,
            "outs": [f"out{i}.txt"],
        }
    (folder / "dvc.yaml").write_text(yaml.safe_dump({"stages": toy_stages}, sort_keys=False))
    for command in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "repro", "-q"]):
        checked(measure(command, folder, env), f"{' '.join(command)} in {folder.name}")
    return folder


def per_folder(dvc_yaml: str) -> str:
    """dvc.yaml with each stage's library modules inside a subpackage declared as that folder."""
    stages = yaml.safe_load(dvc_yaml)["stages"]
    for stage in stages.values():
        spec = stage.get("do", stage)
        folders = [str(Path(dep).parent) if dep.count("/") == 3 and dep.startswith("src/mlpipe/") else dep for dep in spec.get("deps", [])]
        spec["deps"] = list(dict.fromkeys(folders))
    return yaml.safe_dump({"stages": stages}, sort_keys=False)


def folder_variant(pipeline: Path, target: Path, env: dict[str, str]) -> Path:
    """A copy of the reproduced `pipeline` whose dvc.yaml declares part folders, its lock re-recorded
    without running a stage (`dvc commit`)."""
    shutil.copytree(pipeline, target, symlinks=True)
    (target / "dvc.yaml").write_text(per_folder((target / "dvc.yaml").read_text()))
    # A folder's hash covers every file in it: without this, the bytecode a stage's own run leaves
    # in src/mlpipe/*/__pycache__ would change the folder and rerun every stage on the next repro.
    with (target / ".dvcignore").open("a") as ignore:
        ignore.write("\n__pycache__/\n")
    checked(measure(["dvc", "commit", "-f", "-q"], target, env), "dvc commit of the per-folder variant")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7, help="no-op runs per pipeline (interleaved)")
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "DVC_NO_ANALYTICS": "1"}
    results = {"benchmark": "noop_breakdown", "machine": machine_facts(bin_dir), "commit": _commit()}
    with scratch_folder("mlpipe-noop-", keep=False) as workdir:
        pipeline = workdir / "repo"
        snapshot_repository(REPO, pipeline)
        checked(measure(["dvc", "repro", "-q"], pipeline, {**env, "PYTHONPATH": str(pipeline / "src")}), "the pipeline's first repro")
        folders = {
            "this pipeline": pipeline,
            "this pipeline, code deps per part folder": folder_variant(pipeline, workdir / "folders", env),
        }
        results["dvc_lock"] = {
            label: {
                "bytes": (folders[label] / "dvc.lock").stat().st_size,
                "lines": len((folders[label] / "dvc.lock").read_text().splitlines()),
            }
            for label in folders
        }
        for label, (with_params, with_deps) in VARIANTS.items():
            folders[label] = build_toy(workdir / label.replace(" ", "_").replace("'", ""), pipeline, with_params, with_deps, env)
        walls: dict[str, list[float]] = {label: [] for label in folders}
        for _ in range(args.repeats + 1):  # the first round warms DVC's state database and the page cache
            for label, folder in folders.items():
                walls[label].append(checked(measure(["dvc", "repro"], folder, env), f"no-op in {label}").wall_s)
        stage_deps = {
            name: len(stage.get("deps", [])) for name, stage in yaml.safe_load((pipeline / "dvc.yaml").read_text())["stages"].items()
        }
        results["dependencies_per_stage"] = stage_deps
        results["params_file_bytes"] = (pipeline / "params.yaml").stat().st_size
        results["noop_s"] = {
            label: {"median": round(statistics.median(runs[1:]), 3), "runs": [round(wall, 3) for wall in runs[1:]]}
            for label, runs in walls.items()
        }
    write_results("noop_breakdown", results, report(results))
    print(report(results))


def report(results: dict) -> str:
    machine, commit, noop = results["machine"], results["commit"], results["noop_s"]
    ours = noop["this pipeline"]["median"]
    deps = results["dependencies_per_stage"]
    lines = [
        "# No-op `dvc repro`: this pipeline against toys shaped like it",
        "",
        f"{machine['timestamp_utc']} · {machine['nproc']} CPUs · Python {machine['python']} · dvc {machine['packages']['dvc']} · "
        f"commit {commit['head'][:10]} with {commit['uncommitted_changes']} uncommitted change(s)",
        "",
        f"This pipeline: {sum(deps.values())} file dependencies over {sum(1 for count in deps.values() if count)} stages "
        f"({', '.join(f'{name} {count}' for name, count in deps.items() if count)}); params.yaml of {results['params_file_bytes']:,} bytes.",
        "Medians of the no-op runs after one warm-up round, the pipelines taking turns:",
        "",
        "| pipeline | no-op `dvc repro` | this pipeline / it |",
        "|---|---:|---:|",
        *(f"| {label} | {value['median']:.2f} s | {ours / value['median']:.2f}x |" for label, value in noop.items()),
        "",
        "dvc.lock with code dependencies per module and per part folder:",
        "",
        "| declaration | dvc.lock bytes | lines |",
        "|---|---:|---:|",
        *(f"| {label} | {size['bytes']:,} | {size['lines']:,} |" for label, size in results.get("dvc_lock", {}).items()),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
