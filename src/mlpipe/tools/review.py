"""The review report a reviewer pastes into a pull request, and the CI gate on guarded metrics.

    python -m mlpipe.tools.review --base main          # what `make review BASE=main` runs

It asks DVC what changed between `--base` and the workspace (`dvc params diff`, `dvc metrics
diff --all`, `dvc plots diff -o ...`), adds the fairness stage's differences and group tables
(metrics/fairness.json) and the drift verdict from metrics/drift.json, writes Markdown, and
exits 1 when a metric named in `review.guards` got worse by more than its limit. The formatting and the guard check are plain functions of the diffs, so they can be
tested (and reused) without running DVC.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlpipe.config import Guard, load_params
from mlpipe.errors import EXIT_FINDING, EXIT_OK, ArtifactError, ConfigError, PipelineError, exit_status, first_line
from mlpipe.io import read_pipeline_json, write_text
from mlpipe.monitor.retrain import read_verdict
from mlpipe.tools.dvc_cli import dvc

Diff = dict[str, dict[str, dict[str, Any]]]  # file -> key -> {"old", "new", "diff"}


@dataclass(frozen=True)
class GuardResult:
    guard: Guard
    old: float | None
    new: float | None

    @property
    def change(self) -> float | None:
        return None if self.old is None or self.new is None else self.new - self.old

    @property
    def failed(self) -> bool:
        if self.new is None:
            return True  # a guarded metric that disappeared is a regression, not a pass
        if self.change is None:
            return False  # nothing to compare against on the base
        if self.guard.max_drop is not None:
            return -self.change > self.guard.max_drop
        return self.change > self.guard.max_rise

    def describe(self) -> str:
        limit = f"drop ≤ {self.guard.max_drop}" if self.guard.max_drop is not None else f"rise ≤ {self.guard.max_rise}"
        where = f"{self.guard.file}:{self.guard.key}"
        if self.new is None:
            return f"FAIL {where}: missing in the workspace (limit: {limit})"
        if self.change is None:
            return f"pass {where}: {_number(self.new)} (new metric: nothing to compare on the base)"
        verdict = "FAIL" if self.failed else "pass"
        return f"{verdict} {where}: {_number(self.old)} -> {_number(self.new)} ({self.change:+.6f}; limit: {limit})"


def check_guards(metrics_diff: Diff, guards: list[Guard]) -> list[GuardResult]:
    results = []
    for guard in guards:
        entry = metrics_diff.get(guard.file, {}).get(guard.key, {})
        results.append(GuardResult(guard, _as_float(entry.get("old")), _as_float(entry.get("new"))))
    return results


def render(
    base: str,
    params_diff: Diff,
    metrics_diff: Diff,
    guards: list[GuardResult],
    drift: str | None,
    plots: str,
    fairness: tuple[str, dict[str, Any]] | None = None,
    artifacts_url: str | None = None,
) -> str:
    """The review page; `fairness`: (the fairness report's file, the workspace's report), when it exists;
    `artifacts_url`: where a reader of the page finds the plots page (a CI run's artifacts), when the
    local path `plots` is not one they can open."""
    lines = [f"# Review: workspace vs `{base}`", ""]
    failed = [result for result in guards if result.failed]
    lines += [
        "## Verdict",
        "",
        f"**{'REGRESSION' if failed else 'OK'}**: "
        f"{len(failed)} of {len(guards)} guarded metrics beyond their limit (`review.guards` in params.yaml).",
        "",
    ]
    lines += [f"- {result.describe()}" for result in guards] + [""]

    lines += ["## Params changed", ""]
    changed_params = [(file, key, values) for file, entries in params_diff.items() for key, values in sorted(entries.items())]
    if changed_params:
        lines += ["| file | param | old | new |", "|---|---|---|---|"]
        lines += [f"| {file} | `{key}` | {_cell(values.get('old'))} | {_cell(values.get('new'))} |" for file, key, values in changed_params]
    else:
        lines.append("No params changed.")
    lines.append("")

    lines += ["## Metrics", "", "Every metric DVC tracks; changed ones first in each file. Relative change is against the base.", ""]
    guarded = {result.guard.file for result in guards}
    for file, entries in sorted(metrics_diff.items(), key=lambda item: (item[0] not in guarded, item[0])):
        changed = {key: values for key, values in entries.items() if values.get("old") != values.get("new")}
        unchanged = {key: values for key, values in entries.items() if key not in changed}
        lines += [f"### `{file}`: {len(changed)} changed, {len(unchanged)} unchanged", ""]
        if changed:
            lines += _metric_table(changed) + [""]
        if unchanged:
            lines += ["<details><summary>unchanged</summary>", ""] + _metric_table(unchanged) + ["", "</details>", ""]

    if fairness is not None:
        lines += fairness_section(*fairness, metrics_diff)
    if drift is not None:
        lines += ["## Drift (workspace)", "", "```", drift, "```", ""]
    where = f"`{plots}` in [the workflow run's artifacts]({artifacts_url})" if artifacts_url else f"`{plots}`"
    lines += ["## Plots", "", f"Old and new plots side by side: {where} (from `dvc plots diff {base}`).", ""]
    return "\n".join(lines)


COMMENT_LIMIT = 65_536  # characters GitHub accepts in the body of a pull-request comment


def comment_body(report: str, whole: str, artifacts_url: str | None, limit: int = COMMENT_LIMIT) -> str:
    """The report as a pull-request comment: all of it when it fits in `limit` characters, else its
    leading sections that fit (cut where a `##`/`###` heading starts, so no table, details block or
    code fence is left open) and a last line saying where the whole report (`whole`) is."""
    if len(report) <= limit:
        return report
    where = f"[the workflow run's artifacts]({artifacts_url})" if artifacts_url else "the workflow run's artifacts"
    note = (
        f"**The report is cut here**: it has {len(report):,} characters and a comment holds {limit:,}; "
        f"the whole report is `{whole}` in {where}.\n"
    )
    boundaries = [0] + [match.start() + 1 for match in re.finditer(r"\n(?=###? )", report)]
    cut = max(offset for offset in boundaries if offset + len(note) <= limit)
    return report[:cut] + note


DIFFERENCES = {"demographic_parity_difference": "demographic parity", "equalized_odds_difference": "equalised odds"}
GROUP_COLUMNS = {
    "rows": "rows",
    "positives": "positives",
    "roc_auc": "ROC-AUC",
    "selection_rate": "selection rate",
    "true_positive_rate": "TPR",
    "false_positive_rate": "FPR",
}


def fairness_section(file: str, report: dict[str, Any], metrics_diff: Diff) -> list[str]:
    """Per sensitive attribute: its two differences on the base and here (from the metrics diff, the
    keys a guard names), and the workspace's table of groups."""
    if not report.get("sensitive"):
        return []
    entries = metrics_diff.get(file, {})
    lines = [
        "## Fairness by group",
        "",
        f"From `{file}`. A difference is the largest minus the smallest rate over the groups compared "
        f"(at least fairness.min_group_rows = {report['min_group_rows']} rows, both classes): 0 is parity; "
        "the guard key is the one in the first column.",
        "",
    ]
    for name, found in report["sensitive"].items():
        lines += [f"### {name} (`{found['column']}`)", "", "| difference | old | new | change |", "|---|---:|---:|---:|"]
        for key, shown in DIFFERENCES.items():
            old, new = _as_float(entries.get(f"sensitive.{name}.{key}", {}).get("old")), _as_float(found[key])
            change = "" if old is None or new is None else f"{new - old:+.6g}"
            lines.append(f"| {shown} (`sensitive.{name}.{key}`) | {_number(old)} | {_number(new)} | {change} |")
        lines += ["", f"| group | {' | '.join(GROUP_COLUMNS.values())} | compared |", "|---|" + "---:|" * len(GROUP_COLUMNS) + "---|"]
        for group, entry in found["groups"].items():
            cells = " | ".join(_count_or_number(entry.get(column)) for column in GROUP_COLUMNS)
            lines.append(f"| {group} | {cells} | {'yes' if entry['in_differences'] else 'no'} |")
        lines.append("")
    return lines


def _count_or_number(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else _number(_as_float(value))


def _metric_table(entries: dict[str, dict[str, Any]]) -> list[str]:
    rows = ["| metric | old | new | change | relative |", "|---|---:|---:|---:|---:|"]
    for key, values in sorted(entries.items()):
        old, new = values.get("old"), values.get("new")
        change = _as_float(new) - _as_float(old) if _as_float(old) is not None and _as_float(new) is not None else None
        relative = f"{change / abs(_as_float(old)):+.2%}" if change is not None and _as_float(old) else ""
        rows.append(f"| `{key}` | {_cell(old)} | {_cell(new)} | {'' if change is None else f'{change:+.6g}'} | {relative} |")
    return rows


def _as_float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.6g}"


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    return _number(value) if _as_float(value) is not None else f"`{json.dumps(value)}`"


def dvc_json(*args: str) -> Any:
    return json.loads(dvc(*args, "--json") or "{}")


def check_readable(base: str, params: str, guards: list[Guard]) -> None:
    """Refuse, in one line, a guarded metrics file that is corrupt in the workspace or at `base`, and
    a params file that is not YAML at `base`: `dvc metrics diff` and `dvc params diff` skip what they
    cannot read, which would turn a corrupt file into a "missing" metric and so into a regression."""
    import subprocess

    import yaml

    for file in sorted({guard.file for guard in guards}):
        if Path(file).exists():
            read_pipeline_json(file, "the metrics file", "")
    for file in [params, *sorted({guard.file for guard in guards})]:
        shown = subprocess.run(["git", "show", f"{base}:{file}"], capture_output=True, text=True)
        if shown.returncode != 0:
            continue  # not at that revision (a new file, or not git's): the diff says so
        try:
            yaml.safe_load(shown.stdout)  # JSON is YAML
        except yaml.YAMLError as exc:
            if file == params:
                raise ConfigError(f"{file} at revision {base} is not valid YAML ({first_line(exc)}): review against another BASE") from None
            raise ArtifactError(
                f"the metrics file '{file}' at revision {base} is corrupt or truncated ({first_line(exc)}): review against another BASE"
            ) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the review report and gate on guarded metrics.")
    parser.add_argument("--base", required=True, help="git revision to compare the workspace with (branch, tag, commit)")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--output", required=True, type=Path, help="the review page (Markdown)")
    parser.add_argument("--plots-dir", required=True, type=Path, help="where `dvc plots diff` writes its page")
    parser.add_argument("--drift", required=True, type=Path, help="the drift stage's verdict, shown when it exists")
    parser.add_argument(
        "--fairness", default=Path("metrics/fairness.json"), type=Path, help="the fairness stage's report, shown when it exists"
    )
    parser.add_argument(
        "--artifacts-url",
        help="where readers of the report find its folder's files (a CI run's artifacts): the plots page is linked there, named from that folder",
    )
    parser.add_argument(
        "--comment",
        type=Path,
        help=f"also write the report as a pull-request comment's body: cut at a section to GitHub's {COMMENT_LIMIT:,} characters",
    )
    args = parser.parse_args(argv)
    try:
        guards = load_params(args.params).review.guards
        check_readable(args.base, args.params, guards)
        drift = read_verdict(args.drift)[1] if args.drift.exists() else None
        fairness = (
            (args.fairness.as_posix(), read_pipeline_json(args.fairness, "the fairness report", "fairness"))
            if args.fairness.exists()
            else None
        )
        params_diff = dvc_json("params", "diff", args.base)
        metrics_diff = dvc_json("metrics", "diff", args.base, "--all")
        dvc("plots", "diff", args.base, "-o", str(args.plots_dir))
    except PipelineError as exc:
        print(f"error: review: {exc}", file=sys.stderr)
        return exit_status(exc)
    plots_page = str(args.plots_dir / "index.html")
    results = check_guards(metrics_diff, guards)
    # In a run's artifacts the files are named from the report's folder (upload-artifact drops the
    # folder all the uploaded paths share): review_plots/index.html beside review.md.
    shown = Path(os.path.relpath(plots_page, args.output.parent)).as_posix() if args.artifacts_url else plots_page
    report = render(args.base, params_diff, metrics_diff, results, drift, shown, fairness, args.artifacts_url)
    write_text(report, args.output)
    if args.comment is not None:
        write_text(comment_body(report, args.output.name, args.artifacts_url), args.comment)
    for result in results:
        print(result.describe())
    print(f"wrote {args.output}; plots: {plots_page}")
    return EXIT_FINDING if any(result.failed for result in results) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
