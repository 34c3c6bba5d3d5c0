"""Each stage imports only what it uses: a fresh interpreter per stage makes start-up most of a
small pipeline's time, and one stray module-level import (scikit-learn through LightGBM,
matplotlib in a stage that draws nothing, Evidently outside the drift stage) costs a second or
more in every run of that stage.

Each stage runs as DVC runs it (its dvc.yaml command, on a copy of the built repository) under
`python -X importtime`; the packages it has loaded when it exits must belong to its list below,
or be what those packages themselves require. A failure names each stray package and what
importing it cost.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from conftest import Repo, tool_env

# Distributions every stage uses: the harness (argparse, logging, typed params), tables and Parquet.
EVERY_STAGE = {"pandas", "pyarrow", "numpy", "pydantic", "pyyaml"}

# What each stage uses beyond those, as distribution names, and why.
STAGE_PACKAGES = {
    "ingest": set(),
    "validate": {"pandera"},  # the data contract
    "split": set(),
    "featurize": set(),
    "train": {"lightgbm", "dvclive"},  # Optuna too, but only with tune.enabled (not in the default run)
    "evaluate": {"lightgbm", "matplotlib"},  # scoring, figures
    "predict": {"lightgbm", "pandera"},  # scoring, the contract on current rows
    "drift": {"evidently", "scipy"},  # reports and stat tests, distances
}

# Packages that a package above imports when they happen to be installed, without requiring them
# (optional companion -> the package that imports it): allowed, with what they require, wherever
# that package is.
OPTIONAL_IMPORTS = {
    "cloudpickle": "pyarrow",  # Arrow's serialisation helpers
    "hypothesis": "pandera",  # pandera's data-synthesis strategies (the test tools install Hypothesis)
    "charset-normalizer": "numpy",  # numpy.f2py, which SciPy imports
    "psutil": "joblib",  # loky's process executor, which scikit-learn imports
    "rich": "scikit-learn",  # the progress bars of sklearn.callback
    "pillow": "plotly",  # plotly's image validators (Evidently's charts)
    # LightGBM's scikit-learn wrappers, which `import lightgbm` loads when scikit-learn is installed
    # (it is, for lightgbm.dask); no longer kept out by hiding it from the import system (issue 29)
    "scikit-learn": "lightgbm",
}

# Runs the stage script as `python src/stages/<stage>.py` would, and on the harness's final
# `os._exit` writes the top-level names of every module the process loaded.
DRIVER = """
import json, os, runpy, sys
exit_now, driver = os._exit, os.getpid()
def record_and_exit(code):
    if os.getpid() == driver:  # not a forked report worker leaving
        loaded = {name.split(".")[0] for name, module in list(sys.modules.items()) if module is not None}
        with open(os.environ["LOADED_MODULES"], "w") as out:
            json.dump(sorted(loaded), out)
    exit_now(code)
os._exit = record_and_exit
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@cache
def required_closure(distribution: str) -> frozenset[str]:
    """The distribution and everything it requires (extras left out), recursively."""
    seen, todo = set(), [_normal(distribution)]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requirements = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for line in requirements:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(_normal(requirement.name))
    return frozenset(seen)


@cache
def distributions_of_module() -> dict[str, frozenset[str]]:
    return {module: frozenset(map(_normal, names)) for module, names in metadata.packages_distributions().items()}


@cache
def installed_package(module: str) -> bool:
    """A third-party top-level module (in site-packages), not the standard library, mlpipe or a
    private helper (`_distutils_hack`, Cython's `_cyutility`...)."""
    if module.startswith("_"):
        return False
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    location = spec.origin if spec.origin not in (None, "built-in", "frozen") else next(iter(spec.submodule_search_locations or []), None)
    site_packages = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    return location is not None and any(Path(location).is_relative_to(root) for root in site_packages)


@dataclass
class Imported:
    seconds: float  # cumulative import time of its first import
    importer: str | None  # the third-party package whose import brought it in; None: the stage's own code


def imports(importtime: str) -> dict[str, Imported]:
    """Each top-level package in `-X importtime` output (child lines come before their parent's),
    with what its first import cost and which third-party package imported it."""
    entries = []
    for line in importtime.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if match:
            entries.append((len(match[2]), match[3], int(match[1]) / 1e6))
    found: dict[str, Imported] = {}
    for index, (depth, name, seconds) in enumerate(entries):
        top = name.split(".")[0]
        if top in found or not installed_package(top):  # its first line (a submodule's when the package's own is missing)
            continue
        importer = None
        for parent_depth, parent, _ in entries[index + 1 :]:
            if parent_depth < depth:
                depth = parent_depth
                if installed_package(parent.split(".")[0]) and parent.split(".")[0] != top:
                    importer = parent.split(".")[0]
                    break
        found[top] = Imported(seconds, importer)
    return found


@pytest.fixture(scope="module")
def stage_repo(built_repo, tmp_path_factory) -> Repo:
    """A copy of the built repository whose drift stage draws one report (what it imports is the same for four)."""
    repo = built_repo.copy(tmp_path_factory.mktemp("imports") / "repo")
    repo.set_params(drift={"report_windows": ["all"]})
    return repo


@pytest.mark.parametrize("stage", sorted(STAGE_PACKAGES))
def test_a_stage_imports_only_the_packages_it_uses(stage_repo, stage, tmp_path):
    loaded_file = tmp_path / "loaded.json"
    env = {**tool_env(), "PYTHONPATH": str(stage_repo.path / "src"), "LOADED_MODULES": str(loaded_file)}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", DRIVER, f"src/stages/{stage}.py", *stage_repo.command(stage)],
        cwd=stage_repo.path,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    listed = set().union(*(required_closure(name) for name in EVERY_STAGE | STAGE_PACKAGES[stage]))
    while True:  # until no more: a companion's own companions (LightGBM -> scikit-learn -> joblib -> psutil)
        grown = listed | set().union(*(required_closure(companion) for companion, user in OPTIONAL_IMPORTS.items() if user in listed))
        if grown == listed:
            break
        listed = grown
    owners, found = distributions_of_module(), imports(done.stderr)
    loaded = [module for module in json.loads(loaded_file.read_text()) if installed_package(module)]
    stray = [module for module in loaded if not owners.get(module, {module}) & listed]

    def described(module: str) -> str:
        first = found.get(module, Imported(0.0, None))
        source = f"imported by {first.importer}" if first.importer else "imported by the stage's code"
        return f"{module} ({', '.join(sorted(owners.get(module, {module})))}: {first.seconds:.2f} s, {source})"

    assert not stray, f"{stage} imported packages it has no use for: " + ", ".join(map(described, sorted(stray)))


@pytest.mark.parametrize(
    ("stage", "edited", "before", "after", "importer"),
    [
        # The stage's own code imports scikit-learn for nothing.
        (
            "split",
            "src/stages/split.py",
            "from pathlib import Path\n",
            "from pathlib import Path\n\nimport sklearn  # noqa: F401\n",
            "the stage's code",
        ),
    ],
)
def test_the_check_catches_a_stray_import(stage_repo, tmp_path, stage, edited, before, after, importer):
    """The same check fails on a stray import and names the package, its cost and who imported it."""
    script = stage_repo.path / edited
    original = script.read_text()
    assert before in original
    script.write_text(original.replace(before, after, 1))
    try:
        with pytest.raises(
            AssertionError,
            match=rf"{stage} imported packages it has no use for: .*sklearn \(scikit-learn: [\d.]+ s, imported by {importer}\)",
        ):
            test_a_stage_imports_only_the_packages_it_uses(stage_repo, stage, tmp_path)
    finally:
        script.write_text(original)
