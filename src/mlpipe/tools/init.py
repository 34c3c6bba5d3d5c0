"""Point the pipeline at your own table: what `make init DATA=... TARGET=...` runs.

    python -m mlpipe.tools.init --data data/my_table.csv --target churned [--positive yes] [--time month] [--force]
                                [--sep ';' | --sep whitespace] [--no-header] [--names a,b,c]

Profiles the table (`mlpipe.tools.profiling`), prints one line per decision, and rewrites only the
data-specific parts of params.yaml (data, validate.rows/columns, split cut-offs, drift windows,
the sensitive columns it proposes as fairness.groups, the card's statements about the previous
table emptied and, for dates, evaluate.period), keeping every other key and every comment. A local source
that git does not track is versioned with `dvc add` so that `dvc repro` and queued experiments
see exactly the same bytes. Nothing is written when anything is wrong.
"""

from __future__ import annotations

import argparse
import io
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from mlpipe.config import (
    CardParams,
    CsvParams,
    InitParams,
    ValidateParams,
    describe_validation_error,
    parse_params,
    read_params_file,
    read_params_text,
)
from mlpipe.credentials import mask_credentials, source_credentials_problem
from mlpipe.data.sources import infer_format, is_url, normalise_columns, read_source
from mlpipe.errors import ConfigError, DataError, PipelineError, exit_status
from mlpipe.io import write_text
from mlpipe.tools.dvc_cli import dvc
from mlpipe.tools.profiling import Profile, profile_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="a CSV or Parquet file, a folder of them, or an http(s)/s3 URL")
    parser.add_argument("--target", required=True, help="the binary column to predict")
    parser.add_argument("--positive", help="the target value counted as positive (asked when it cannot be told)")
    parser.add_argument("--time", help="the column that orders rows in time (inferred when unambiguous)")
    parser.add_argument("--format", choices=["csv", "parquet"], help="when the file name does not tell")
    parser.add_argument("--sep", help="CSV separator: one character such as ';' or '|', or tab, or whitespace (data.csv.sep)")
    parser.add_argument("--no-header", action="store_true", help="the CSV file has no header line: every line is data")
    parser.add_argument("--names", help="the CSV columns' names in file order, comma-separated: id,age,outcome")
    parser.add_argument("--force", action="store_true", help="overwrite uncommitted edits to params.yaml")
    parser.add_argument("--params", default="params.yaml", type=Path)
    args = parser.parse_args(argv)
    try:
        init(
            args.data,
            args.target,
            positive=args.positive,
            time_column=args.time,
            fmt=args.format,
            csv_options=csv_options(args.sep, not args.no_header, args.names),
            params_path=args.params,
            force=args.force,
            ask=_ask if sys.stdin.isatty() else None,
        )
    except PipelineError as exc:
        print(f"error: init: {mask_credentials(str(exc))}", file=sys.stderr)
        return exit_status(exc)
    return 0


def csv_options(sep: str | None, header: bool, names: str | None) -> CsvParams:
    """data.csv from init's options (SEP, HEADER=0, NAMES through make), checked as params.yaml would be."""
    raw = {
        "sep": "," if sep is None else sep,
        "header": header,
        "names": None if names is None else [name.strip() for name in names.split(",")],
    }
    try:
        return CsvParams.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"data.csv.{describe_validation_error(exc)}") from None


def _ask(question: str) -> str:
    try:
        return input(question).strip()
    except EOFError:
        raise DataError("no answer given: pass POSITIVE=<value>") from None


def init(
    source: str,
    target: str,
    *,
    positive: str | None = None,
    time_column: str | None = None,
    fmt: str | None = None,
    csv_options: CsvParams | None = None,
    params_path: Path = Path("params.yaml"),
    force: bool = False,
    ask=None,
    out=print,
) -> Profile:
    """Profile `source` and rewrite the data-specific sections of `params_path`; see the module doc."""
    root = params_path.resolve().parent
    if not params_path.exists():
        raise ConfigError(f"'{params_path}' not found: run make init from the repository root")
    if not force:
        _refuse_uncommitted_edits(params_path)
    problem = source_credentials_problem(source)
    if problem:
        raise ConfigError(f"DATA: {problem}")
    local = None if is_url(source) else Path(source)
    if local is not None and not local.exists():
        raise DataError(f"DATA={source!r} does not exist: give the path of a CSV or Parquet file (or a folder of them) or a URL")
    csv_options = csv_options or CsvParams()
    if fmt is None and csv_options != CsvParams() and local is not None and local.is_file() and not _format_known(local):
        fmt = "csv"  # a CSV option was given for a file whose name does not say (data.txt, data.dat)
    one_file = local.is_file() if local is not None else source.lower().startswith(("http://", "https://"))
    if fmt is None and one_file and not _format_known(source):
        raise DataError(f"cannot tell the format of {source!r} from its name: pass FORMAT=csv or FORMAT=parquet (--format)")
    table = normalise_columns(read_source(source, fmt, csv_options=csv_options), origin=source)
    out(f"read {len(table):,} rows x {table.shape[1]} columns from {source}")
    current = read_params_file(params_path)  # a file the stages could not read is refused before init rewrites it
    limits = table_limits(current, params_path)
    profile = profile_table(
        table, target, positive=positive, time_column=time_column, ask=ask, **limits, leak_rule=leak_rule(current, params_path)
    )

    versioned_source, to_version, notes = source, None, []
    if local is not None:
        versioned_source, to_version = _repository_path(local, root)
    text = rewrite_params(
        params_path.read_text(encoding="utf-8"), profile, versioned_source, fmt, csv_options, out=lambda line: notes.append(line)
    )
    check_readers_agree(text, yaml_round_trip().load(text), str(params_path))
    parse_params(read_params_text(text, str(params_path)), origin=str(params_path))  # what is written must pass the params check

    for line in [*(f"  {decision}" for decision in profile.decisions), *notes]:
        out(line)
    for line in profile.warnings:
        out(f"  warning: {line}")
    if local is not None and local.resolve() != (root / versioned_source).resolve():
        _copy(local, root / versioned_source)
        out(f"  copied {source} to {versioned_source}: the pipeline reads data inside the repository")
    write_text(text, params_path)
    out(
        f"wrote {params_path} (data, validate, split, drift{', evaluate.period' if profile.period else ''}, fairness.groups, card); "
        "review it with `git diff params.yaml`"
    )
    if to_version:
        dvc("add", to_version, cwd=root)
        out(
            f"versioned {to_version} with `dvc add`: commit {to_version}.dvc and the .gitignore beside it "
            "(queued experiments see only committed files)"
        )
        if profile.data["personal_columns"]:
            out(
                f"  warning: {to_version} itself holds the personal-looking columns in clear: the DVC cache keeps it as it is, "
                "and `make push` sends it to the remote; keep that remote as private as the file"
            )
    out("next: make repro")
    return profile


def _format_known(path: str | Path) -> bool:
    try:
        infer_format(urlsplit(path).path if isinstance(path, str) and is_url(path) else path)
    except DataError:
        return False
    return True


def table_limits(document: Any, params_path: Path) -> dict[str, Any]:
    """validate's table-wide limits in the params being rewritten (`document`, as read), which keep
    them: the profile gives a column beyond them its own limit, so that the written contract passes."""
    section = document.get("validate") if isinstance(document, dict) else None
    given = {key: section[key] for key in ("max_null_share", "max_text_length") if key in section} if isinstance(section, dict) else {}
    try:
        limits = ValidateParams.model_validate(given)
    except ValidationError as exc:
        raise ConfigError(f"{params_path}: validate.{describe_validation_error(exc)}") from None
    return {"max_null_share": limits.max_null_share, "max_text_length": limits.max_text_length}


def leak_rule(document: Any, params_path: Path) -> InitParams:
    """The leakage guard's rule: the init section of the params being rewritten (defaults without one)."""
    section = document.get("init") if isinstance(document, dict) else None
    try:
        return InitParams.model_validate(section or {})
    except ValidationError as exc:
        raise ConfigError(f"{params_path}: init.{describe_validation_error(exc)}") from None


def _refuse_uncommitted_edits(params_path: Path) -> None:
    done = subprocess.run(
        ["git", "status", "--porcelain", "--", params_path.name], cwd=params_path.resolve().parent, capture_output=True, text=True
    )
    if done.returncode == 0 and done.stdout.strip():
        raise ConfigError(f"{params_path} has uncommitted edits: commit them, or pass FORCE=1 to overwrite its data sections")


def _repository_path(local: Path, root: Path) -> tuple[str, str | None]:
    """Where the pipeline reads the source (inside the repository), and the path to `dvc add`
    when git does not already version it (None when it does, or DVC already tracks it)."""
    try:
        inside = local.resolve().relative_to(root)
    except ValueError:
        inside = Path("data") / local.name
        if (root / inside).exists():
            raise DataError(
                f"DATA={str(local)!r} is outside the repository and '{inside}' already exists: "
                "copy the file into data/ under a new name and pass that path"
            ) from None
        return inside.as_posix(), inside.as_posix()
    if (root / f"{inside}.dvc").exists():
        return inside.as_posix(), None
    tracked = subprocess.run(["git", "ls-files", "--error-unmatch", "--", str(inside)], cwd=root, capture_output=True)
    return inside.as_posix(), None if tracked.returncode == 0 or _is_stage_output(inside, root) else inside.as_posix()


def _is_stage_output(path: Path, root: Path) -> bool:
    """Whether a stage of dvc.yaml writes `path` (a SQL snapshot, say): DVC versions it already."""
    lock = root / "dvc.lock"
    if not lock.exists():
        return False
    locked = yaml_round_trip().load(lock.read_text(encoding="utf-8")) or {}
    return any(Path(out["path"]) in (path, *path.parents) for stage in locked.get("stages", {}).values() for out in stage.get("outs", []))


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copyfile(source, target)


def yaml_round_trip():
    """ruamel.yaml set to keep params.yaml as people write it: comments, order, one-line entries, `null`."""
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096  # keep one-line entries on one line
    yaml.representer.add_representer(type(None), lambda representer, _: representer.represent_scalar("tag:yaml.org,2002:null", "null"))
    return yaml


def _flow(value: Any) -> Any:
    """Nested lists and mappings written on one line, as params.yaml writes them; text quoted
    wherever a YAML 1.1 reader (PyYAML, DVC) would take it for something else (yes, on, 1e3)."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(value, dict):
        node = CommentedMap((_text(key), _flow(item)) for key, item in value.items())
    elif isinstance(value, list):
        node = CommentedSeq(_flow(item) for item in value)
    else:
        return _text(value)
    node.fa.set_flow_style()
    return node


def _text(value: Any) -> Any:
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString, SingleQuotedScalarString

    if not isinstance(value, str) or _plain_reads_back(value):
        return value
    # Single quotes keep every printable character as it is; a line break (YAML 1.1 counts NEL and
    # the Unicode separators too) or a control character is folded or refused there, and needs the
    # escapes of double quotes.
    return SingleQuotedScalarString(value) if value.isprintable() else DoubleQuotedScalarString(value)


_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# YAML 1.1's booleans and null among identifiers (`y` and `n` too: PyYAML and ruamel leave them
# text, other YAML 1.1 readers do not).
_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}


def _plain_reads_back(value: str) -> bool:
    """Whether `value` written unquoted reads back as the same text, as a list item and as a mapping
    key, through both readers of params.yaml: the stages' (PyYAML, YAML 1.1) and DVC's (ruamel, 1.2)."""
    if _PLAIN_NAME.fullmatch(value):  # the common case, decided without parsing
        return value.lower() not in _YAML_WORDS
    if value.lower() in _YAML_WORDS:
        return False
    for document, expected in ((f"[{value}]", [value]), (f"{{{value}: 0}}", {value: 0})):
        for read in (_read_as_stages_do, _read_as_dvc_does):
            try:
                if read(document) != expected:
                    return False
            except Exception:  # noqa: BLE001 - either reader's syntax error: the text needs quotes
                return False
    return True


def _read_as_stages_do(text: str) -> Any:
    from mlpipe.config import read_params_text

    return read_params_text(text, "params.yaml")


def _read_as_dvc_does(text: str) -> Any:
    """params.yaml as DVC reads it to record params in dvc.lock (`dvc.utils.serialize.parse_yaml`)."""
    from ruamel.yaml import YAML

    return YAML(typ="safe").load(text)


def check_readers_agree(text: str, document: Any, origin: str) -> None:
    """Refuse to write `text` unless the stages' reader and DVC's both read back `document`, the values meant."""
    for reader, read in (("PyYAML (the stages)", _read_as_stages_do), ("ruamel (DVC)", _read_as_dvc_does)):
        where = _first_difference(document, read(text))
        if where is not None:
            path, meant, got = where
            raise ConfigError(
                f"{origin}: {'.'.join(map(str, path)) or 'the file'} would be read by {reader} as {got!r}, not {meant!r}: "
                "quote that value (or key) in params.yaml"
            )


def _first_difference(meant: Any, got: Any, path: tuple = ()) -> tuple[tuple, Any, Any] | None:
    if isinstance(meant, dict) and isinstance(got, dict):
        for key in meant:
            if key not in got:
                return (*path, key), key, next((other for other in got if other not in meant), None)
            found = _first_difference(meant[key], got[key], (*path, key))
            if found:
                return found
        return None
    if isinstance(meant, list) and isinstance(got, list) and len(meant) == len(got):
        return next(filter(None, (_first_difference(a, b, (*path, i)) for i, (a, b) in enumerate(zip(meant, got, strict=True)))), None)
    same = meant == got and (type(meant) is bool) == (type(got) is bool) and isinstance(meant, str) == isinstance(got, str)
    return None if same else (path, meant, got)


def _with_reasons(columns: list[str], reasons: dict[str, str]) -> Any:
    """A block list, one column a line with its reason as a comment, so that `git diff params.yaml`
    shows why each column went (a comment: PyYAML and DVC read the plain list)."""
    from ruamel.yaml.comments import CommentedSeq

    items = [_text(column) for column in columns]
    listed = CommentedSeq(items)
    width = max(len(item) + (2 if type(item) is not str else 0) for item in items)  # quoted text takes two more
    for index, column in enumerate(columns):
        if reasons.get(column):
            listed.yaml_add_eol_comment(reasons[column], index, column=4 + 2 + width + 2)
    return listed


def _section(document: Any, name: str) -> Any:
    from ruamel.yaml.comments import CommentedMap

    if not isinstance(document.get(name), dict):
        document[name] = CommentedMap()
    return document[name]


def _replace_mapping(parent: Any, key: str, entries: dict[str, Any]) -> None:
    """Replace the entries of parent[key] in place (its comments stay), each on one line."""
    from ruamel.yaml.comments import CommentedMap

    if not isinstance(parent.get(key), dict):
        parent[key] = CommentedMap()
    mapping = parent[key]
    for name in list(mapping):
        del mapping[name]
    for name, value in entries.items():
        mapping[_text(name)] = _flow(value)


# The card's statements about a model (params.card), emptied when init points the pipeline at another table.
CARD_STATEMENTS = {
    "name": None,
    "dataset_name": None,
    "intended_use": None,
    "out_of_scope": [],
    "limitations": [],
    "license": None,
    "owners": [],
}


def rewrite_params(text: str, profile: Profile, source: str, fmt: str | None, csv_options: CsvParams | None = None, out=print) -> str:
    """params.yaml's text with the table's data-specific values put in; every other key and comment kept."""
    yaml = yaml_round_trip()
    document = yaml.load(text)
    data = _section(document, "data")
    read_as = (csv_options or CsvParams()).model_dump()
    for key, value in {"source": source, "format": fmt, "pattern": None, "csv": read_as, **profile.data}.items():
        data[key] = _flow(value)
    if profile.data["drop_columns"]:
        data["drop_columns"] = _with_reasons(profile.data["drop_columns"], profile.dropped)
    validate = _section(document, "validate")
    rows = validate.get("rows")
    if isinstance(rows, dict):
        rows["min"] = profile.rows_min
    else:
        validate["rows"] = _flow({"min": profile.rows_min, "max": None})
    _replace_mapping(validate, "columns", profile.contract)
    split = _section(document, "split")
    for key, value in profile.split.items():
        split[key] = _flow(value)
    _replace_mapping(_section(document, "drift"), "windows", profile.windows)
    fairness = _section(document, "fairness")
    if profile.fairness:
        _replace_mapping(fairness, "groups", profile.fairness)
    else:  # a block mapping emptied in place would be written as a bare `{}` line, which no reader takes
        fairness["groups"] = _flow({})
    card = _section(document, "card")
    if any(card.get(key) for key in CARD_STATEMENTS):
        # They described the table before (the default data's, at first): a card must not repeat them for this one.
        for key, empty in CARD_STATEMENTS.items():
            card[key] = _flow(empty)
            # The key's comment (its description) stays, moved beside the shorter value, with the
            # blank lines that followed it.
            old = card.ca.items.pop(key, None)
            after = old[2].value[len(old[2].value.rstrip("\n")) :] if old and old[2] else "\n"
            card.yaml_add_eol_comment(CardParams.model_fields[key].description, key)
            card.ca.items[key][2].value = card.ca.items[key][2].value.rstrip("\n") + after
        out(
            "  card: name, dataset, intended use, out-of-scope uses, limitations, licence and owners emptied (they described "
            "the previous table): state them in params.yaml's card section, the model card shows them"
        )
    if profile.period:
        _section(document, "evaluate")["period"] = profile.period
    features = _section(document, "features")
    derived = dict(features.get("derived") or {})
    kept = kept_derived(derived, profile.columns)
    if kept != derived:
        out(f"  features.derived: removed {', '.join(derived.keys() - kept.keys())} (they read columns this table does not have)")
        _replace_mapping(features, "derived", kept)
    out = io.StringIO()
    yaml.dump(document, out)
    return out.getvalue()


def kept_derived(derived: dict[str, str], columns: list[str]) -> dict[str, str]:
    """The derived features that read only columns of the table (or derived features before them)."""
    from mlpipe.data.expressions import parse_expression

    known, kept = set(columns), {}
    for name, text in derived.items():
        if set(parse_expression(text, f"features.derived.{name}").columns) <= known:
            kept[name] = text
            known.add(name)
    return kept


if __name__ == "__main__":
    sys.exit(main())
