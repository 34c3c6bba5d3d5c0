"""Figures never clip a label: long feature names, class labels, periods and metric names are
shortened or given room, and every text drawn lies inside the figure."""

import numpy as np
import pytest

from mlpipe.config import EvaluateParams
from mlpipe.model import plots
from mlpipe.model.evaluation import evaluate_scores

LONG = "recorded_after_the_outcome_of_the_case_and_kept_in_the_export_"  # 63 characters


def long_named_inputs():
    """An evaluation whose names are all long: 80-character features, class labels and periods."""
    rng = np.random.default_rng(0)
    rows = 600
    y = rng.integers(0, 2, rows)
    proba = np.clip(0.3 + 0.4 * y + rng.normal(0, 0.2, rows), 0, 1)
    params = EvaluateParams()
    report, tables = evaluate_scores(
        y, proba, None, params, ("no recorded offence within two years of screening", "re-offended within two years")
    )
    report["by_period"] = {f"2013-08-{day:02d} 06:03:42 (screening period {day})": {"roc_auc": 0.7 + day / 100} for day in range(1, 9)}
    tables["feature_importance"] = [
        {"feature": f"{i:02d}_{LONG}{LONG}"[:80], "gain_share": 1 / (i + 1), "contribution_share": 1 / (25 - i)} for i in range(25)
    ]
    curve = [{"iteration": i, "train_logloss": 0.7 - i / 100, "validation_logloss": 0.7 - i / 120} for i in range(1, 40)]
    return report, tables, curve


def figures_with_long_labels():
    report, tables, curve = long_named_inputs()
    figures = plots.evaluation_figures(report, tables, curve, best_iteration=30)
    assert "roc_auc_by_period" in figures
    figures["long_metric_by_period"] = plots.metric_by_period_figure(
        {period: {LONG: 0.7 + i / 100} for i, period in enumerate(report["by_period"])}, metric=LONG
    )
    # The default data's case: four-decimal tick labels pushed the y label off the figure.
    figures["close_scores_by_year"] = plots.metric_by_period_figure(
        {"2016": {"roc_auc": 0.90319}, "2017": {"roc_auc": 0.90612}, "2018": {"roc_auc": 0.9062}}
    )
    figures["short_names"] = plots.importance_figure(
        [{"feature": name, "gain_share": 0.5, "contribution_share": 0.5} for name in ("AGEP", "SEX")]
    )
    rates = {"selection_rate": 0.5, "true_positive_rate": 0.9, "false_positive_rate": 0.2}
    figures["fairness_long_groups"] = plots.fairness_figure([{"group": f"race: {i:02d} {LONG}", **rates} for i in range(9)])
    figures["fairness_short_groups"] = plots.fairness_figure([{"group": f"sex: {name}", **rates} for name in ("male", "female")])
    return figures


def drawn_texts(figure):
    """Every non-empty text the figure draws, with its extent in display pixels. An axis keeps
    labels of ticks outside its view, which are not drawn: only those inside it count."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    FigureCanvasAgg(figure).draw()
    renderer = figure.canvas.get_renderer()
    tick_labels, drawn = set(), []
    for axes in figure.axes:
        for axis in (axes.xaxis, axes.yaxis):
            low, high = sorted(axis.get_view_interval())
            for tick in [*axis.get_major_ticks(), *axis.get_minor_ticks()]:
                tick_labels.update((tick.label1, tick.label2))
                if low - 1e-9 <= tick.get_loc() <= high + 1e-9:
                    drawn += [tick.label1, tick.label2]
    drawn += [text for text in figure.findobj(Text) if text not in tick_labels]
    return [(text.get_text(), text.get_window_extent(renderer)) for text in drawn if text.get_visible() and text.get_text()]


@pytest.mark.parametrize("name", list(figures_with_long_labels()))
def test_every_text_of_every_figure_lies_inside_it(name):
    figure = figures_with_long_labels()[name]
    texts = drawn_texts(figure)
    assert len(texts) > 5
    box = figure.bbox
    outside = [
        (text, [round(value) for value in extent.extents])
        for text, extent in texts
        if extent.x0 < box.x0 - 0.5 or extent.y0 < box.y0 - 0.5 or extent.x1 > box.x1 + 0.5 or extent.y1 > box.y1 + 0.5
    ]
    assert not outside, f"{name}: clipped in a {box.width:.0f}x{box.height:.0f} figure: {outside}"


def test_long_names_are_shortened_around_an_ellipsis_and_every_bar_keeps_its_own():
    """Two 80-character names that differ only at their end stay two bars with two labels."""
    assert plots.shorten("a" * 40) == "a" * 40
    short = plots.shorten("x" * 30 + "_2017", 20)
    assert len(short) == 20 and short.startswith("xxxxxxxxxx…") and short.endswith("_2017")
    names = [f"{LONG}{LONG}_a"[-80:], f"{LONG}{LONG}_b"[-80:]]
    figure = plots.importance_figure(
        [{"feature": name, "gain_share": share, "contribution_share": 1 - share} for name, share in zip(names, (0.6, 0.4), strict=True)]
    )
    labels = [label.get_text() for label in figure.axes[0].get_yticklabels()]
    assert len(figure.axes[0].patches) == 4 and len(set(labels)) == 2  # a gain bar and a contribution bar each
    assert all(len(label) <= plots.LABEL_CHARACTERS for label in labels)
