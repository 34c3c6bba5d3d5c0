"""A review page of the pipeline's plots that works with no network: what `make plots` runs.

    python -m mlpipe.tools.plots_page --output reports/plots.html [--base main] [--images docs/images]

`dvc plots show` and `dvc plots diff` write HTML that loads Vega from a CDN, so it is blank
offline or behind a proxy. This asks DVC for the same plots as Vega-Lite specs (`--json`),
renders each to a static SVG with vl-convert (Vega compiled into the wheel; nothing is
fetched) and writes one self-contained page. With `--base REV` each plot overlays the
workspace and that revision, as `dvc plots diff REV` does. `--images DIR` also writes each plot
as a PNG (how the pictures in docs/ are made).
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import re
import sys
from pathlib import Path
from typing import Any

from mlpipe.errors import ArtifactError, DataError, PipelineError, exit_status
from mlpipe.io import write_text
from mlpipe.tools.dvc_cli import dvc

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
section {{ display: inline-block; vertical-align: top; margin: 0 2rem 2rem 0; }}
h2 {{ font-size: 1rem; max-width: 40rem; }}
</style>
</head>
<body>
<h1>{title}</h1>
{sections}
</body>
</html>
"""


def plots_json(base: str | None) -> dict[str, list[dict[str, Any]]]:
    """DVC's plots, as `{plot id: [rendered entries]}`, for the workspace (and `base`, when given).
    DVC leaves out a plot file it cannot read and lists it under `errors`: a corrupt one is refused
    (`ArtifactError`), and so is one missing from the workspace (not yet built), never drawn blank."""
    text = dvc("plots", "diff", base, "--json") if base else dvc("plots", "show", "--json")
    shown = json.loads(text or "{}")
    for problem in shown.get("errors", []):
        source, revision = problem.get("source", "a plot definition"), problem.get("rev", "workspace")
        if problem.get("type") == "FileNotFoundError":
            if revision == "workspace":
                raise DataError(f"the plot data '{source}' does not exist: run `dvc repro` (or `dvc pull`) first")
            continue  # not at the base revision (a plot added since): drawn from the workspace alone
        where = "" if revision == "workspace" else f" at revision {base}"
        fix = "rebuild it with `dvc repro`" if revision == "workspace" else "compare with another BASE"
        raise ArtifactError(f"the plot data '{source}'{where} is corrupt or truncated ({problem.get('msg', problem.get('type'))}): {fix}")
    return shown.get("data", {})


def render_page(plots: dict[str, list[dict[str, Any]]], title: str) -> str:
    """One page: each Vega-Lite plot as inline SVG, each image plot embedded; no script, no fetch."""
    import vl_convert

    sections = []
    for name, entries in plots.items():
        bodies = []
        for entry in entries:
            if entry.get("type") == "vega":
                bodies.append(vl_convert.vegalite_to_svg(entry["content"]))
            elif entry.get("type") == "image" and Path(entry.get("url", "")).is_file():
                encoded = base64.b64encode(Path(entry["url"]).read_bytes()).decode("ascii")
                revisions = ", ".join(entry.get("revisions", []))
                bodies.append(f'<img alt="{html.escape(name)} ({html.escape(revisions)})" src="data:image/png;base64,{encoded}">')
        body = "\n".join(bodies) or "<p>no data in this revision</p>"
        sections.append(f"<section>\n<h2>{html.escape(name)}</h2>\n{body}\n</section>")
    return PAGE.format(title=html.escape(title), sections="\n".join(sections))


def write_images(plots: dict[str, list[dict[str, Any]]], folder: Path) -> list[Path]:
    """Each Vega-Lite plot as a PNG named after its plot id (`Drift score per ...` -> drift_score_per_....png)."""
    import vl_convert

    from mlpipe.io import atomic_path

    written = []
    for name, entries in plots.items():
        for entry in entries[:1]:
            if entry.get("type") == "vega":
                path = folder / (re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")[:60] + ".png")
                with atomic_path(path) as temporary:
                    temporary.write_bytes(vl_convert.vegalite_to_png(entry["content"]))
                written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True, type=Path, help="the page to write")
    parser.add_argument("--base", help="a git revision to overlay (branch, tag, commit); default: the workspace alone")
    parser.add_argument("--images", type=Path, help="also write each plot as <DIR>/<plot id>.png")
    args = parser.parse_args(argv)
    try:
        plots = plots_json(args.base)
    except PipelineError as exc:
        print(f"error: plots: {exc}", file=sys.stderr)
        return exit_status(exc)
    title = f"Plots: workspace against {args.base}" if args.base else "Plots: workspace"
    write_text(render_page(plots, title), args.output)
    if args.images:
        for path in write_images(plots, args.images):
            print(f"wrote {path}")
    print(f"wrote {args.output} ({len(plots)} plots; opens with no network)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
