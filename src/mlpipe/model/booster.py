"""LightGBM at its boundary: its import, the names and parameters it is given, persistence in its
native text format, and scoring. Training itself is `mlpipe.model.training`.

The parameters make training deterministic by construction: fixed seeds, `deterministic=True`,
`force_row_wise=True` and a fixed thread count from params, so the same data and params give
a byte-identical model file.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import unicodedata
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mlpipe.config import TrainParams
from mlpipe.data.schema import FeatureSchema
from mlpipe.errors import DataError, first_line
from mlpipe.io import corrupt_artifact

if TYPE_CHECKING:
    import lightgbm as lgb

log = logging.getLogger(__name__)


@functools.cache
def lightgbm_core():
    """LightGBM, imported on first use: a stage's first log line need not wait for it, and a
    stage that does not train or score never pays for it.

    `import lightgbm` also imports scikit-learn (for `LGBMClassifier` and friends, which only
    `lightgbm.dask` uses here); that is part of the cost, paid once per process, measured in
    docs/benchmarks.md ("LightGBM's import").
    """
    import lightgbm

    lightgbm.register_logger(logging.getLogger("lightgbm"))
    return lightgbm


# LightGBM refuses these in a feature name (its JSON dump would break); it turns ASCII whitespace
# into `_` on its own (so `a b` and `a_b` would meet); its text model stores the names on one line,
# separated by spaces, which a line break, another separator or a control character would corrupt.
_UNFIT_IN_LIGHTGBM_NAME = frozenset(',:[]{}"')


def _fits_lightgbm(char: str) -> bool:
    return char not in _UNFIT_IN_LIGHTGBM_NAME and not unicodedata.category(char).startswith(("C", "Z"))


def lightgbm_names(names: Sequence[str]) -> list[str]:
    """The names LightGBM is given for the feature columns `names` (distinct): the only place the
    user's names are changed, at the LightGBM boundary; everything else (the feature table, the
    schema, validation, drift, the service and predictions) keeps the real names, and what comes
    back from a booster is mapped to them with `real_names`.

    A name LightGBM stores as it is stays itself (so the model text of plain names is the same as
    without this mapping). In another, each unfit character becomes `_` (`a:b` -> `a_b`); only when
    that meets a name already taken does it get a short suffix from a hash of the real name
    (`a_b_6783a3` beside a column `a_b`), then a counter if even that is taken: the same names always give the same
    result, and two names never give one."""
    real = [str(name) for name in names]
    taken = {name for name in real if all(map(_fits_lightgbm, name))}
    given = []
    for name in real:
        if all(map(_fits_lightgbm, name)):
            given.append(name)
            continue
        base = "".join(char if _fits_lightgbm(char) else "_" for char in name)
        candidate, digest, attempt = base, hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:6], 0
        while candidate in taken:
            attempt += 1
            candidate = f"{base}_{digest}" if attempt == 1 else f"{base}_{digest}_{attempt}"
        taken.add(candidate)
        given.append(candidate)
    return given


def real_names(given: Sequence[str], names: Sequence[str]) -> list[str]:
    """The real feature names, of `names`, behind the names `given` back by a booster trained on
    columns `names` (the inverse of `lightgbm_names`)."""
    real = dict(zip(lightgbm_names(names), map(str, names), strict=True))
    unknown = [name for name in given if name not in real]
    if unknown:
        raise DataError(
            f"the model's features {unknown} are not among the schema's {list(names)}: train writes both together; run `dvc repro train`"
        )
    return [real[name] for name in given]


def for_lightgbm(features: pd.DataFrame) -> pd.DataFrame:
    """`features` with the column names LightGBM is given (`lightgbm_names`): the same frame when
    they are its own, else a shallow copy (no data is copied)."""
    given = lightgbm_names(features.columns)
    if given == list(features.columns):
        return features
    renamed = features.copy(deep=False)
    renamed.columns = given
    return renamed


def lightgbm_params(train: TrainParams) -> dict[str, Any]:
    return {
        "objective": "binary",
        "metric": ["binary_logloss"],
        "learning_rate": train.learning_rate,
        "num_leaves": train.num_leaves,
        "max_depth": train.max_depth,
        "min_child_samples": train.min_child_samples,
        "reg_alpha": train.reg_alpha,
        "reg_lambda": train.reg_lambda,
        "subsample": train.subsample,
        "subsample_freq": train.subsample_freq,
        "colsample_bytree": train.colsample_bytree,
        "seed": train.seed,
        "num_threads": train.num_threads,
        "deterministic": True,
        "force_row_wise": True,
        "verbosity": -1,
    }


def categorical_columns(features: pd.DataFrame) -> list[str]:
    return [name for name in features.columns if isinstance(features[name].dtype, pd.CategoricalDtype)]


def model_to_text(booster: lgb.Booster) -> str:
    """The native text format; an early-stopped booster is saved up to its best iteration."""
    return booster.model_to_string()


@functools.lru_cache(maxsize=2)
def booster_of(model_text: str) -> lgb.Booster:
    """The booster of a model text, once per process: a worker scores many parts with one model."""
    return model_from_text(model_text)


def model_from_text(text: str, origin: str = "models/model.txt") -> lgb.Booster:
    """The booster of a model text `model_to_text` wrote (read from `origin`). LightGBM crashes the
    whole process on some truncated texts (a segmentation fault, not an error), so the text is
    checked to be whole first: a model file ends with its trees, its parameters and the
    `pandas_categorical:` line."""
    last = text.rstrip("\n").rsplit("\n", 1)[-1]
    whole = text.startswith("tree\n") and "\nend of trees\n" in text and "\nend of parameters\n" in text and text.endswith("\n")
    try:
        if not whole or not last.startswith("pandas_categorical:"):
            raise ValueError("it does not end as a LightGBM model file does")
        json.loads(last.removeprefix("pandas_categorical:"))
        _check_tree_sizes(text)
        return lightgbm_core().Booster(model_str=text)
    except (ValueError, lightgbm_core().basic.LightGBMError) as exc:
        raise corrupt_artifact("model", origin, "train", first_line(exc)) from None


def _check_tree_sizes(text: str) -> None:
    """LightGBM finds each tree by the byte sizes its header lists (`tree_sizes=`) and crashes the
    process when they are wrong: a file cut or spliced in the middle (a copy over the file while
    it is read) can still begin and end as a model does. Each tree must start where the sizes say."""
    header, found, _ = text.partition("\ntree_sizes=")
    if not found:
        return  # written without sizes: LightGBM reads the trees one after another
    try:
        sizes = [int(size) for size in text[len(header) + len("\ntree_sizes=") :].split("\n", 1)[0].split()]
    except ValueError:
        raise ValueError("its tree_sizes line is not a list of sizes") from None
    start, end = text.find("\nTree=0\n") + 1, text.find("\nend of trees\n") + 1
    offsets = np.cumsum([start, *sizes]).tolist()
    if start == 0 or offsets[-1] != end or any(not text.startswith(f"Tree={i}\n", at) for i, at in enumerate(offsets[:-1])):
        raise ValueError("its trees are not the sizes its header lists (cut or spliced)")


def predict_proba(booster: lgb.Booster, features: pd.DataFrame, schema: FeatureSchema, threads: int = 0) -> np.ndarray:
    """Probability of the positive label for feature rows built by `features.make_features`.
    `threads` is LightGBM's (0: its default); rows are scored independently, so it changes no result."""
    if len(features) == 0:  # LightGBM refuses an empty table; a part of a partitioned one may be empty
        return np.zeros(0)
    return booster.predict(model_input(features, schema), num_threads=threads)


def model_input(features: pd.DataFrame, schema: FeatureSchema) -> pd.DataFrame:
    """What the booster is given for feature rows: the schema's columns in its order, under the
    names LightGBM knows them by (its pandas categoricals it maps to their codes itself). One
    place, so that probabilities and explanations (`mlpipe.model.explain`) see the same input."""
    return for_lightgbm(features[schema.feature_names])


def feature_importance(booster: lgb.Booster, names: Sequence[str]) -> pd.DataFrame:
    """Each feature's gain, splits and share of the gain, under its real name (of `names`, the
    columns the booster was trained on: `schema.feature_names`)."""
    table = pd.DataFrame(
        {
            "feature": real_names(booster.feature_name(), names),
            "gain": booster.feature_importance("gain"),
            "splits": booster.feature_importance("split"),
        }
    )
    table["gain_share"] = table["gain"] / max(table["gain"].sum(), 1e-12)
    return table.sort_values(["gain", "feature"], ascending=[False, True]).reset_index(drop=True)
