"""The model card (mlpipe.model.card and the card stage): every field from the pipeline's files, the
Markdown and the JSON saying the same, the same bytes on every run, text from data and params
escaped, and the files an optional feature leaves out named as not measured."""

from __future__ import annotations

import hashlib
import html.parser
import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from conftest import ROOT, stage_function
from mlpipe.config import load_params
from mlpipe.data.schema import FeatureSchema, FeatureSpec
from mlpipe.harness import execute
from mlpipe.model import card
from mlpipe.model.calibration import Calibration
from mlpipe.model.scoring import model_version

HOSTILE = "x](http://evil.example)<script>alert(1)</script>|![i](http://evil.example/i.png)"
METRICS = {"rows": 300, "positive_rate": 0.5, "roc_auc": 0.81234, "pr_auc": 0.8, "log_loss": 0.45, "brier": 0.15}
METRICS |= {"accuracy": 0.75, "precision": 0.7, "recall": 0.8, "f1": 0.746667}
ESTIMATE = {"rows": 150, "labelled_rows": 0, "roc_auc": {"value": 0.8, "std": 0.01, "low": 0.78, "high": 0.82, "realised": None}}
ESTIMATE |= {"accuracy": {"value": 0.74, "std": 0.02, "low": 0.7, "high": 0.77, "realised": None}}


def pipeline_files(root: Path, hostile: str = "AGEP") -> dict[str, Path]:
    """The files the card stage reads, as the stages write them, for a model of two features (the
    second one named `hostile`), trained on 2014-2015 and tested on 2016-2017."""
    paths = {
        "model": root / "models/model.txt",
        "model_schema": root / "models/schema.json",
        "raw": root / "data/raw/dataset.parquet",
        "train": root / "data/split/train.parquet",
        "train_record": root / "metrics/train",
        "evaluation": root / "metrics/evaluation.json",
        "drift": root / "metrics/drift.json",
        "fairness": root / "metrics/fairness.json",
        "calibration": root / "models/calibration.json",
    }
    for folder in ("models", "data/raw/dataset.parquet", "data/split/train.parquet", "metrics/train"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    paths["model"].write_text("tree\nversion=v4\nnum_class=1\n")
    schema = FeatureSchema(
        "employed",
        1,
        0,
        (FeatureSpec("SCHL", "numeric", "int16"), FeatureSpec(hostile, "categorical", "object", ("a", "b", "c"))),
        time_column="year",
        id_columns=("id",),
    )
    paths["model_schema"].write_text(schema.to_json())
    table = pd.DataFrame({"id": range(600), "year": [2014, 2015, 2016, 2017] * 150, "SCHL": 16, hostile: "a", "employed": [0, 1] * 300})
    table.iloc[:300].to_parquet(paths["raw"] / "part-00000-0000.parquet", index=False)
    table.iloc[300:].to_parquet(paths["raw"] / "part-00000-0001.parquet", index=False)
    table[table.year <= 2015].to_parquet(paths["train"] / "part-00000-0000.parquet", index=False)
    (paths["train_record"] / "params.yaml").write_text(
        "objective: binary\nmetric:\n- binary_logloss\nnum_leaves: 31\nlearning_rate: 0.05\nmax_depth: -1\ndeterministic: true\n"
    )
    (paths["train_record"] / "metrics.json").write_text(json.dumps({"train_rows": 300, "validation_rows": 30, "n_trees": 42}))
    evaluation = {"threshold": 0.42, "test": METRICS, "by_period": {"2016": METRICS, "2017": {**METRICS, "roc_auc": 0.8}}}
    paths["evaluation"].write_text(json.dumps(evaluation))
    window = {"rows": 150, "drifted_features": 1, "drifted_columns": [hostile], "prediction_drift": {"drifted": False}}
    window |= {"columns": {"SCHL": {}, hostile: {}}, "roc_auc": 0.8, "auc_change": -0.01234, "estimated_performance": ESTIMATE}
    reasons = [f"window 2017: dataset drift ({hostile})"]
    paths["drift"].write_text(
        json.dumps({"retrain_recommended": True, "reasons": reasons, "empty_windows": {}, "windows": {"2017": window}})
    )
    group = {"rows": 150, "positives": 75, "roc_auc": 0.8, "selection_rate": 0.5, "true_positive_rate": 0.8, "false_positive_rate": 0.2}
    sensitive = {"column": "SEX", "demographic_parity_difference": 0.0312, "equalized_odds_difference": 0.0456}
    sensitive["groups"] = {"male": {**group, "in_differences": True}, hostile: {**group, "in_differences": True}}
    paths["fairness"].write_text(json.dumps({"threshold": 0.42, "rows": 300, "min_group_rows": 100, "sensitive": {"sex": sensitive}}))
    fitted_on = {"rows": 30, "positives": 15, "brier_raw": 0.2, "brier_calibrated": 0.18, "log_loss_raw": 0.6, "log_loss_calibrated": 0.55}
    fitted_on["at_threshold"] = {"precision": 0.7, "recall": 0.8, "f1": 0.746667}
    calibration = Calibration("isotonic", {"x": [0.0, 1.0], "y": [0.0, 1.0]}, 0.42, {"objective": "f1"}, fitted_on)
    paths["calibration"].write_text(calibration.to_json())
    return paths


@pytest.fixture
def params():
    return load_params(ROOT / "params.yaml")


def built(paths: dict[str, Path], params) -> dict:
    return card.build_card(card.read_inputs(params, **paths), params)


def test_the_card_holds_every_field_from_the_pipelines_files_and_params(tmp_path, params):
    paths = pipeline_files(tmp_path)
    found = built(paths, params)
    details, training, evaluation = found["model_details"], found["training_details"], found["evaluation"]
    assert details["version"] == model_version(paths["model"].read_text())  # as scored rows and the service name the model
    assert (details["target"], details["positive_label"], details["license"], details["owners"]) == (
        "employed",
        1,
        "mit",
        params.card.owners,
    )
    assert found["uses"] == {"intended_use": params.card.intended_use, "out_of_scope": params.card.out_of_scope}
    assert found["bias_risks_limitations"]["limitations"] == params.card.limitations
    # The hash the card states is the one it says it is: the parts' bytes one after the other, in name order.
    parts = sorted(paths["raw"].glob("*.parquet"))
    assert training["data"]["sha256"] == hashlib.sha256(b"".join(part.read_bytes() for part in parts)).hexdigest()
    assert training["data"]["hashed"] == f"the bytes of {paths['raw']}'s 2 Parquet part file(s), one after the other in name order"
    assert (training["data"]["source"], training["data"]["rows"]) == (params.data.source, 600)
    assert training["window"] == {
        "strategy": "time",
        "time_column": "year",
        "rows": 300,
        "train_until": 2015,
        "test_from": 2016,
        "first": 2014,
        "last": 2015,
    }
    assert training["features"] == [{"name": "SCHL", "kind": "numeric", "levels": 0}, {"name": "AGEP", "kind": "categorical", "levels": 3}]
    assert training["hyperparameters"] == {
        "objective": "binary",
        "metric": ["binary_logloss"],
        "num_leaves": 31,
        "learning_rate": 0.05,
        "max_depth": -1,
        "deterministic": True,
    }
    assert training["procedure"] == {"train_rows": 300, "validation_rows": 30, "n_trees": 42}
    assert evaluation["overall"] == METRICS and evaluation["by_period"]["2017"]["roc_auc"] == 0.8
    assert evaluation["by_group"]["measured"] and evaluation["by_group"]["attributes"]["sex"]["equalized_odds_difference"] == 0.0456
    assert evaluation["calibration"] == {
        "measured": True,
        "source": str(paths["calibration"]),
        "method": "isotonic",
        "threshold": 0.42,
        "objective": "the highest F1",
        "fitted_on": {
            "rows": 30,
            "positives": 15,
            "brier": {"raw": 0.2, "calibrated": 0.18},
            "log_loss": {"raw": 0.6, "calibrated": 0.55},
            "at_threshold": {"precision": 0.7, "recall": 0.8, "f1": 0.746667},
        },
    }
    assert evaluation["threshold"] == 0.42
    monitoring = found["monitoring"]
    assert monitoring["retrain_recommended"] and monitoring["reasons"] == ["window 2017: dataset drift (AGEP)"]
    assert monitoring["windows"]["2017"]["drifted_features"] == 1 and monitoring["windows"]["2017"]["estimated_performance"] == ESTIMATE
    # The Hugging Face metadata: one result per test set (overall, then each period), each metric a type and a value.
    (index,) = found["metadata"]["model-index"]
    assert index["name"] == params.card.name and [result["dataset"].get("args") for result in index["results"]] == [
        None,
        {"year": "2016"},
        {"year": "2017"},
    ]
    overall = index["results"][0]
    assert overall["task"]["type"] == "tabular-classification" and overall["dataset"]["revision"] == training["data"]["sha256"]
    assert {metric["type"]: metric["value"] for metric in overall["metrics"]}["roc_auc"] == 0.81234
    assert found["metadata"]["license"] == "mit" and found["metadata"]["library_name"] == "lightgbm"


def test_the_markdown_says_what_the_json_says(tmp_path, params):
    found = built(pipeline_files(tmp_path), params)
    text = card.render_markdown(found)
    _, front, body = text.split("---\n", 2)
    assert yaml.safe_load(front) == found["metadata"]  # the front matter is the metadata, parsed back
    assert json.loads(card.card_json(found)) == found
    for line in [
        f"- **Version:** {found['model_details']['version']} ",
        f"- **Content hash:** sha256 {found['training_details']['data']['sha256']} of ",
        "| 300 | 0.8123 | 0.8000 | 0.4500 | 0.1500 | 0.7500 | 0.7000 | 0.8000 | 0.7467 |",
        "| 2017 | 300 | 0.8000 | 0.8000 |",
        "**sex** (column SEX): demographic-parity difference 0.0312, equalised-odds difference 0.0456",
        "- **Threshold:** 0.4200 (the highest F1)",
        "- Brier score: 0.2000 before calibration, 0.1800 after",
        "- **Retrain recommended:** yes",
        "| 2017 | 150 | 1 of 2 | no | 0.8000 | -0.0123 | 0.8000 (0.7800-0.8200) | 0.7400 (0.7000-0.7700) |",
        "- **Training window:** time split: training rows up to 2015, test rows from 2016; 300 training rows; their year runs from 2014 to 2015",
        "| metric | binary_logloss |",
        "| deterministic | true |",
        "| num_leaves | 31 |",
        "| learning_rate | 0.05 |",
        "| max_depth | -1 |",
    ]:
        assert line in body, line
    assert params.card.intended_use.split(":")[0] in body
    assert all(item.split(";")[0].replace("(", "").split(")")[0][:30] in body for item in params.card.out_of_scope)


def test_a_missing_optional_file_is_a_section_that_says_so(tmp_path, params):
    paths = pipeline_files(tmp_path)
    paths["fairness"].unlink()
    paths["calibration"].unlink()
    found = built(paths, params)
    assert not found["evaluation"]["by_group"]["measured"] and not found["evaluation"]["calibration"]["measured"]
    text = card.render_markdown(found)
    assert f"Not measured: {paths['fairness']} does not exist (the fairness stage is not in this pipeline)." in text
    assert f"None: {paths['calibration']} does not exist, so the model's probabilities are used as they are." in text
    paths["fairness"].write_text(json.dumps({"threshold": 0.5, "min_group_rows": 100, "sensitive": {}}))  # fairness.groups: {}
    assert "Not measured: no sensitive column is declared (fairness.groups in params.yaml is empty)." in card.render_markdown(
        built(paths, params)
    )


def test_a_source_url_shows_no_secret_even_past_the_params_check(tmp_path, params):
    """The params check refuses a URL holding a password or a token; the card masks one anyway."""
    source = "https://ann:" + "hunter2@host/t.csv?tok" + "en=s3cr3tT0ken"  # assembled: the secret scan reads this file
    leaky = params.model_copy(update={"data": params.data.model_copy(update={"source": source})})
    found = built(pipeline_files(tmp_path), leaky)
    text = card.render_markdown(found) + card.card_json(found)
    assert (
        "hunter2" not in text
        and "s3cr3tT0ken" not in text
        and found["training_details"]["data"]["source"] == "https://ann:***@host/t.csv?token=***"
    )


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "fairness",
            "[1, 2]",
            r"error: card: the group metrics '.*fairness.json' is corrupt or truncated .*: rebuild it with `dvc repro fairness`",
        ),
        (
            "drift",
            '{"windows": {}',
            r"error: card: the drift verdict '.*drift.json' is corrupt or truncated .*: rebuild it with `dvc repro drift`",
        ),
        (
            "evaluation",
            None,
            r"error: card: the evaluation metrics '.*evaluation.json' does not exist: run `dvc repro evaluate` \(or `dvc pull`\) first",
        ),
    ],
)
def test_a_file_the_card_reads_that_is_cut_short_or_missing_is_one_line_naming_its_stage(tmp_path, capsys, name, content, message):
    paths = pipeline_files(tmp_path)
    paths[name].unlink() if content is None else paths[name].write_text(content)
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    options = [f"--{key.replace('_', '-')}={path}" for key, path in paths.items()]
    out = [f"--markdown={tmp_path / 'card.md'}", f"--json={tmp_path / 'card.json'}"]
    status = execute(stage_function("card"), [f"--params={tmp_path / 'params.yaml'}", *options, *out])
    assert status == (1 if content is None else 3) and re.fullmatch(message, capsys.readouterr().err.strip())
    assert not (tmp_path / "card.md").exists()


def test_the_stage_writes_the_same_bytes_every_time(tmp_path, params):
    paths = pipeline_files(tmp_path)
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    options = [f"--{name.replace('_', '-')}={path}" for name, path in paths.items()]
    written = []
    for run in range(2):
        out = [f"--markdown={tmp_path / f'card{run}.md'}", f"--json={tmp_path / f'card{run}.json'}"]
        assert execute(stage_function("card"), [f"--params={tmp_path / 'params.yaml'}", *options, *out]) == 0
        written.append(((tmp_path / f"card{run}.md").read_bytes(), (tmp_path / f"card{run}.json").read_bytes()))
    assert written[0] == written[1]
    assert json.loads(written[0][1]) == built(paths, params)


class Tags(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.text = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)

    def handle_data(self, data):
        self.text.append(data)


def rendered(markdown: str) -> Tags:
    """The HTML a CommonMark renderer that passes raw HTML through (and draws tables) makes of `markdown`."""
    tags = Tags()
    tags.feed(MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown))
    return tags


def test_text_from_the_data_and_params_cannot_add_links_html_or_cells(tmp_path, params):
    """A column and a group named like a link, an image, a script and a table cell, and a limitation
    holding the same, show as written: no <a>, <img> or <script> on the rendered card. The front
    matter is YAML for tools (Hugging Face and GitHub read it as data, never as Markdown): there the
    values are as they are, and read back as they are."""
    hostile_params = params.model_copy(update={"card": params.card.model_copy(update={"limitations": [HOSTILE], "name": HOSTILE})})
    found = built(pipeline_files(tmp_path, hostile=HOSTILE), hostile_params)
    _, front, text = card.render_markdown(found).split("---\n", 2)
    assert yaml.safe_load(front)["model-index"][0]["name"] == HOSTILE
    assert "<script>" not in text and not re.search(r"(?<!\\)\]\(", text)  # every ] of a would-be link escaped
    page = rendered(text)
    assert not {"a", "img", "script"} & set(page.tags)
    assert sum(HOSTILE in piece for piece in page.text) >= 5  # the title, a limitation, a feature, a group, a drifted window's reason
    feature_table = text.split("### Features")[1].split("###")[0]
    assert all(line.count(" | ") == 2 for line in feature_table.splitlines() if line.startswith("| "))  # still three cells


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(list("ab1 .-+*_`[]()<>!#|~:/@&;\\=\n\t") + ["www.", "http://", "&amp;", "1.", "---"]), max_size=20).map(
        "".join
    )
)
def test_escaped_text_renders_as_itself_and_nothing_else(text):
    """Whatever the text, a bullet or a table cell of it renders as one item holding exactly that text."""
    shown = " ".join(text.split())
    bullet = rendered(f"- {card.escape(text)}\n")
    assert bullet.tags == ["ul", "li"] and "".join(bullet.text).strip() == shown
    cell = rendered(f"| a | b |\n|---|---|\n| {card.escape(text)} | x |\n")
    assert cell.tags.count("td") == 2 and not {"a", "img", "code", "em", "strong"} & set(cell.tags)


def test_the_service_metadata_holds_the_card_or_says_there_is_none(tmp_path, params):
    """/metadata shows what `training_metadata` reads: the card whole, null before the card stage
    ran (the service starts without it), and a corrupt card refuses to start in one line."""
    from mlpipe.errors import ArtifactError
    from mlpipe.tools.serve import training_metadata

    paths = pipeline_files(tmp_path)
    found = built(paths, params)
    (tmp_path / "card.json").write_text(card.card_json(found))
    record = paths["train_record"] / "params.yaml"
    assert training_metadata(paths["evaluation"], record, tmp_path / "card.json")["card"] == found
    assert training_metadata(paths["evaluation"], record, tmp_path / "missing.json")["card"] is None
    (tmp_path / "card.json").write_text(card.card_json(found)[:100])
    with pytest.raises(ArtifactError, match=r"the model card '.*card.json' is corrupt or truncated .*: rebuild it with `dvc repro card`"):
        training_metadata(paths["evaluation"], record, tmp_path / "card.json")
