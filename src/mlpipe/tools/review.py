"""The review report a reviewer pastes into a pull request, and the CI gate on guarded metrics.

    python -m mlpipe.tools.review --base main          # what `make review BASE=main` runs

It asks DVC what changed between `--base` and the workspace (`dvc params diff`, `dvc metrics
diff --all`, `dvc plots diff -o ...`), adds the fairness stage's differences and group tables
(metrics/fairness.json) and the drift verdict from metrics/drift.json, writes Markdown with the
answer on its first screen (the verdict, the params, a headline of the guarded and test-set
metrics) and everything else folded below, and exits 1 when a metric named in `review.guards` got worse by more than its limit. The formatting and the guard check are plain functions of the diffs, so they can be
tested (and reused) without running DVC.
"""

from __future__ import annotations

import argparse
import functools
import html
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

    def describe(self, markdown: bool = False) -> str:
        """One line, as printed; with `markdown`, the metric's name in a code span (it is a user's key)."""
        limit = f"drop ≤ {self.guard.max_drop}" if self.guard.max_drop is not None else f"rise ≤ {self.guard.max_rise}"
        where = f"{self.guard.file}:{self.guard.key}"
        where = _code(where, table=False) if markdown else where
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


EVALUATION = "metrics/evaluation.json"  # the evaluate stage's metrics: its `test.*` keys head the review
# The test metrics a reviewer reads first, in this order; any other `test.*` key follows, by name.
HEADLINE_ORDER = ["roc_auc", "pr_auc", "log_loss", "brier", "accuracy", "precision", "recall", "f1"]


def render(
    base: str,
    params_diff: Diff,
    metrics_diff: Diff,
    guards: list[GuardResult],
    drift: tuple[dict[str, Any], str] | None,
    plots: str,
    fairness: tuple[str, dict[str, Any]] | None = None,
    artifacts_url: str | None = None,
    evaluation: str = EVALUATION,
    unchanged_listed_in: str | None = None,
) -> str:
    """The review page, headline first: the guards' verdict, the params changed, a headline (the
    guarded metrics, the test metrics of `evaluation`, the fairness differences and the drift
    verdict), the plots, then every metric and table folded (<details>), so the first screen holds
    the answer. `drift`: the drift stage's verdict (report, text), when it exists; `fairness`: (the
    fairness report's file, the workspace's report), when it exists; `artifacts_url`: where a reader
    of the page finds the plots page (a CI run's artifacts), when the local path `plots` is not one
    they can open; `unchanged_listed_in`: the page that lists the unchanged metrics, which this one
    then only counts (a pull-request comment: the drift metrics alone hold hundreds of unchanged
    rows). Names from data and params are shown as written and never become markup."""
    lines = [f"# Review: workspace vs {_code(base, table=False)}", ""]
    failed = [result for result in guards if result.failed]
    lines += [
        "## Verdict",
        "",
        f"**{'REGRESSION' if failed else 'OK'}**: "
        f"{len(failed)} of {len(guards)} guarded metrics beyond their limit (`review.guards` in params.yaml).",
        "",
    ]
    lines += [f"- {result.describe(markdown=True)}" for result in guards] + [""]

    lines += ["## Params changed", ""]
    changed_params = [(file, key, values) for file, entries in sorted(params_diff.items()) for key, values in sorted(entries.items())]
    if changed_params:
        lines += ["| file | param | old | new |", "|---|---|---|---|"]
        lines += [
            f"| {_text(file)} | {_code(key)} | {_cell(values.get('old'))} | {_cell(values.get('new'))} |"
            for file, key, values in changed_params
        ]
    else:
        lines.append("No params changed.")
    lines.append("")

    lines += headline_section(metrics_diff, guards, evaluation, fairness, drift)
    in_artifacts = f" in [the workflow run's artifacts]({artifacts_url})" if artifacts_url else ""
    where = _code(plots, table=False) + in_artifacts
    lines += ["## Plots", "", f"Old and new plots side by side: {where} (from {_code(f'dvc plots diff {base}', table=False)}).", ""]

    lines += [
        "## All metrics",
        "",
        "Every metric DVC tracks, one fold per file: changed ones first. Relative change is against the base."
        if unchanged_listed_in is None
        else f"Every metric DVC tracks that changed, one fold per file (the unchanged ones are listed in {_code(unchanged_listed_in, table=False)}{in_artifacts}). "
        "Relative change is against the base.",
        "",
    ]
    guarded = {result.guard.file for result in guards}
    for file, entries in sorted(metrics_diff.items(), key=lambda item: (item[0] not in guarded, item[0])):
        changed = {key: values for key, values in entries.items() if values.get("old") != values.get("new")}
        unchanged = {key: values for key, values in entries.items() if key not in changed}
        summary = f"{_html_code(file)}: {len(changed)} changed, {len(unchanged)} unchanged"
        body = _metric_table([(_code(key), changed[key]) for key in sorted(changed)]) + [""] if changed else []
        if unchanged and unchanged_listed_in is None:
            body += ["Unchanged:", "", *_metric_table([(_code(key), unchanged[key]) for key in sorted(unchanged)]), ""]
        lines += _fold(summary, body)

    if fairness is not None:
        lines += fairness_section(*fairness)
    if drift is not None:
        windows = len(drift[0]["windows"])
        lines += ["## Drift (workspace)", ""]
        lines += _fold(f"the drift stage's verdict, {windows} window{'s' if windows != 1 else ''}", [*_fenced(drift[1]), ""])
    return "\n".join(lines)


def headline_section(
    metrics_diff: Diff,
    guards: list[GuardResult],
    evaluation: str,
    fairness: tuple[str, dict[str, Any]] | None,
    drift: tuple[dict[str, Any], str] | None,
) -> list[str]:
    """What a reviewer reads first: the guarded metrics, then the test metrics of `evaluation`, old
    and new; the fairness differences per sensitive attribute; the drift verdict in one line."""
    rows = {(result.guard.file, result.guard.key): True for result in guards}
    test_keys = [key for key in metrics_diff.get(evaluation, {}) if key.startswith("test.")]
    order = {f"test.{name}": index for index, name in enumerate(HEADLINE_ORDER)}
    rows |= {
        (evaluation, key): False
        for key in sorted(test_keys, key=lambda key: (order.get(key, len(order)), key))
        if (evaluation, key) not in rows
    }
    differences = fairness is not None and bool(fairness[1].get("sensitive"))
    lines = ["## Headline", ""]
    if not rows and not differences and drift is None:
        return [*lines, "No guarded or test-set metrics.", ""]
    if rows:
        lines += [
            f"The guarded metrics and the test-set metrics (`test.*` of {_code(evaluation, table=False)}); "
            "every metric is under All metrics below.",
            "",
        ]
        labelled = [
            (
                _code(key if file == evaluation else f"{file}:{key}") + (" (guarded)" if is_guarded else ""),
                metrics_diff.get(file, {}).get(key, {}),
            )
            for (file, key), is_guarded in rows.items()
        ]
        lines += _metric_table(labelled) + [""]
    if differences:
        lines += fairness_differences(*fairness, metrics_diff) + [""]
    if drift is not None:
        report = drift[0]
        if report["retrain_recommended"]:
            reasons = report["reasons"]
            more = f" (and {len(reasons) - 1} more)" if len(reasons) > 1 else ""
            verdict = f"**RETRAIN RECOMMENDED**: {_text(reasons[0])}{more}"
        else:
            windows = len(report["windows"])
            verdict = f"no retraining needed across {windows} window{'s' if windows != 1 else ''}"
        lines += [f"**Drift** (workspace): {verdict}; the report is under Drift below.", ""]
    return lines


COMMENT_LIMIT = 65_536  # characters GitHub accepts in the body of a pull-request comment


def comment_body(report: str, whole: str, artifacts_url: str | None, limit: int = COMMENT_LIMIT) -> str:
    """The report as a pull-request comment: all of it when it fits in `limit` characters, else its
    leading sections and folds that fit (cut where a `##`/`###` heading or a top-level <details>
    starts, `cut_points`, so no table, fold or code fence is left open) and a last line saying
    where the whole report (`whole`) is. The verdict and the headline come first, so they stay."""
    if len(report) <= limit:
        return report
    where = f"[the workflow run's artifacts]({artifacts_url})" if artifacts_url else "the workflow run's artifacts"
    note = (
        f"**The report is cut here**: it has {len(report):,} characters and a comment holds {limit:,}; "
        f"the whole report is `{whole}` in {where}.\n"
    )
    cut = max(offset for offset in cut_points(report) if offset + len(note) <= limit)
    return report[:cut] + note


def cut_points(report: str) -> list[int]:
    """Offsets where the report can be cut: where a `##`/`###` heading or a top-level <details> block
    starts, outside every code fence and <details> block, so that no fold or fence is left open."""
    points, offset, depth, fence = [0], 0, 0, ""
    for line in report.split("\n"):
        if fence:
            if re.fullmatch(rf"{fence[0]}{{{len(fence)},}}[ \t]*", line):
                fence = ""
        elif opening := re.match(r"`{3,}|~{3,}", line):
            fence = opening.group()
        elif line.startswith("<details>"):
            points += [offset] if depth == 0 else []
            depth += 1
        elif line.startswith("</details>"):
            depth = max(depth - 1, 0)
        elif depth == 0 and line.startswith(("## ", "### ")):
            points.append(offset)
        offset += len(line) + 1
    return points


DIFFERENCES = {"demographic_parity_difference": "demographic parity", "equalized_odds_difference": "equalised odds"}
GROUP_COLUMNS = {
    "rows": "rows",
    "positives": "positives",
    "roc_auc": "ROC-AUC",
    "selection_rate": "selection rate",
    "true_positive_rate": "TPR",
    "false_positive_rate": "FPR",
}


def fairness_differences(file: str, report: dict[str, Any], metrics_diff: Diff) -> list[str]:
    """Each sensitive attribute's two differences on the base (from the metrics diff) and here, named
    by the key a guard takes."""
    entries = metrics_diff.get(file, {})
    lines = [f"| fairness difference (0 is parity; {_code(file)}) | old | new | change |", "|---|---:|---:|---:|"]
    for name, found in report["sensitive"].items():
        for key, shown in DIFFERENCES.items():
            old, new = _as_float(entries.get(f"sensitive.{name}.{key}", {}).get("old")), _as_float(found[key])
            change = "" if old is None or new is None else f"{new - old:+.6g}"
            lines.append(f"| {shown} ({_code(f'sensitive.{name}.{key}')}) | {_number(old)} | {_number(new)} | {change} |")
    return lines


def fairness_section(file: str, report: dict[str, Any]) -> list[str]:
    """The workspace's table of groups per sensitive attribute, each folded (their differences are
    in the headline)."""
    if not report.get("sensitive"):
        return []
    lines = [
        "## Fairness by group",
        "",
        f"From {_code(file, table=False)}, on the test rows; the differences are in the headline. A difference is the largest "
        f"minus the smallest rate over the groups compared (at least fairness.min_group_rows = {report['min_group_rows']} rows, "
        "both classes): 0 is parity.",
        "",
    ]
    for name, found in report["sensitive"].items():
        groups = found["groups"]
        compared = sum(1 for entry in groups.values() if entry["in_differences"])
        table = [f"| group | {' | '.join(GROUP_COLUMNS.values())} | compared |", "|---|" + "---:|" * len(GROUP_COLUMNS) + "---|"]
        for group, entry in groups.items():
            cells = " | ".join(_count_or_number(entry.get(column)) for column in GROUP_COLUMNS)
            table.append(f"| {_text(group)} | {cells} | {'yes' if entry['in_differences'] else 'no'} |")
        summary = f"{_html_code(name)} ({_html_code(found['column'])}): {len(groups)} groups, {compared} compared"
        lines += _fold(summary, [*table, ""])
    return lines


def _count_or_number(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else _number(_as_float(value))


def _metric_table(rows: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """A table of (the metric's cell, as Markdown; its diff entry) rows: old, new, change, relative."""
    lines = ["| metric | old | new | change | relative |", "|---|---:|---:|---:|---:|"]
    for label, values in rows:
        old, new = values.get("old"), values.get("new")
        change = _as_float(new) - _as_float(old) if _as_float(old) is not None and _as_float(new) is not None else None
        relative = f"{change / abs(_as_float(old)):+.2%}" if change is not None and _as_float(old) else ""
        lines.append(f"| {label} | {_cell(old)} | {_cell(new)} | {'' if change is None else f'{change:+.6g}'} | {relative} |")
    return lines


def _fold(summary: str, body: list[str]) -> list[str]:
    """`body` (Markdown) folded under `summary` (HTML): GitHub renders Markdown inside <details>
    when blank lines surround it. The tags start their lines, where comment_body may cut."""
    return [f"<details><summary>{summary}</summary>", "", *body, "</details>", ""]


def _code(text: str, table: bool = True) -> str:
    """`text` as a Markdown code span that shows it as written: fenced by more backticks than any run
    in it, padded when it starts or ends with a backtick or a space (CommonMark strips one space
    from each side), a line break shown as \\n (a table row is one line), and in a table cell `|`
    escaped (GFM splits a row at every unescaped `|`, code spans included)."""
    text = _one_line(text)
    if table:
        text = text.replace("|", "\\|")
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if not text or text[0] in "` " or text[-1] in "` " else ""
    return f"{fence}{pad}{text}{pad}{fence}"


MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_\[\]<>&|~!#$])")  # what may start markup in a line, or GitHub's math


def _text(text: str) -> str:
    """`text` as Markdown text shown as written: each character that could start markup
    backslash-escaped (CommonMark shows an escaped punctuation character as itself), on one line."""
    return _one_line(MARKDOWN_PUNCTUATION.sub(r"\\\1", text))


def _html_code(text: str) -> str:
    """`text` in <code> inside the HTML of a <summary> line, where Markdown is not read."""
    return f"<code>{html.escape(_one_line(text))}</code>"


def _one_line(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _fenced(text: str) -> list[str]:
    """`text` as a fenced code block whose fence no line of it can close."""
    fence = "`" * max(3, max((len(run) + 1 for run in re.findall(r"`{3,}", text)), default=0))
    return [fence, text, fence]


def _as_float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.6g}"


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    return _number(value) if _as_float(value) is not None else _code(json.dumps(value))


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
        "--evaluation", default=EVALUATION, help="the evaluate stage's metrics file, whose `test.*` metrics head the review"
    )
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
        drift = read_verdict(args.drift) if args.drift.exists() else None
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
    page = functools.partial(
        render, args.base, params_diff, metrics_diff, results, drift, shown, fairness, args.artifacts_url, args.evaluation
    )
    write_text(page(), args.output)
    if args.comment is not None:
        write_text(comment_body(page(unchanged_listed_in=args.output.name), args.output.name, args.artifacts_url), args.comment)
    for result in results:
        print(result.describe())
    print(f"wrote {args.output}; plots: {plots_page}")
    return EXIT_FINDING if any(result.failed for result in results) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
