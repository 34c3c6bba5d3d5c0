"""dvc.yaml declares exactly what each stage reads: its script and the library modules it imports."""

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def library_imports(path: Path) -> set[str]:
    """mlpipe modules imported by a file: `import mlpipe.x`, `from mlpipe.x import y` (y a name or, in
    a package, its submodule mlpipe.x.y); each with the packages above it, whose __init__ runs first."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("mlpipe")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mlpipe"):
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names if (ROOT / module_file(f"{node.module}.{alias.name}")).exists()}
    return {".".join(name.split(".")[:depth]) for name in found for depth in range(1, name.count(".") + 2)}


def module_file(module: str) -> str:
    """The file of a module: src/mlpipe/x/y.py, or a package's src/mlpipe/x/__init__.py."""
    package = f"src/{module.replace('.', '/')}/__init__.py"
    return package if (ROOT / package).exists() else f"src/{module.replace('.', '/')}.py"


def closure(script: str) -> set[str]:
    """Every repository Python file a stage script executes: itself, then mlpipe modules transitively."""
    files, queue = {script}, [script]
    while queue:
        for module in library_imports(ROOT / queue.pop()):
            name = module_file(module)
            if name not in files:
                files.add(name)
                queue.append(name)
    return files


@pytest.mark.parametrize("stage", sorted(PIPELINE))
def test_code_deps_are_exactly_the_files_the_stage_runs(stage):
    spec = PIPELINE[stage].get("do", PIPELINE[stage])  # a foreach stage declares its body under `do`
    assert spec["cmd"].startswith("PYTHONPATH=src python src/stages/"), "stages must import the library of the checkout they run in"
    script = spec["cmd"].split()[2]
    assert script == f"src/stages/{stage}.py"
    declared = {dep for dep in spec["deps"] if dep.endswith(".py")}
    assert declared == closure(script)


def test_every_stage_script_has_a_stage_and_library_never_imports_stages():
    scripts = {path.stem for path in (ROOT / "src" / "stages").glob("*.py")}
    assert scripts == set(PIPELINE)
    for module in (ROOT / "src" / "mlpipe").rglob("*.py"):
        assert not any(name.startswith("stages") for name in library_imports(module)), module
        assert "sys.path" not in module.read_text(), module


def test_metrics_and_plot_data_live_in_git_not_the_cache():
    for stage, spec in PIPELINE.items():
        spec = spec.get("do", spec)
        for entry in spec.get("metrics", []) + [o for o in spec.get("outs", []) if isinstance(o, dict)]:
            ((path, options),) = entry.items()
            assert path.startswith("metrics/"), (stage, path)
            assert options == {"cache": False}, (stage, path)


def rerun_table() -> str:
    """Markdown: for each library module, the stages `dvc repro` reruns after an edit to it."""
    deps = {stage: set(spec.get("do", spec)["deps"]) for stage, spec in PIPELINE.items()}
    rows = ["| edit to | reruns |", "|---|---|"]
    for module in sorted((ROOT / "src" / "mlpipe").rglob("*.py")):
        name = module.relative_to(ROOT).as_posix()
        stages = [stage for stage in PIPELINE if name in deps[stage]]
        shown = ", ".join(f"`{stage}`" for stage in stages) if len(stages) < len(PIPELINE) else "every stage"
        rows.append(f"| `{name}` | {shown or 'nothing (no stage imports it)'} |")
    return "\n".join(rows) + "\n"


def test_the_docs_table_of_what_an_edit_reruns_is_current():
    """docs/architecture.md shows `rerun_table()`; regenerate it with `python tests/test_dvc_yaml.py`."""
    assert rerun_table() in (ROOT / "docs" / "architecture.md").read_text()


if __name__ == "__main__":
    print(rerun_table(), end="")
