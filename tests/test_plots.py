"""The item-accuracy figure: a model's stages side by side in one colour per stage (the legend), the
single labelers and the ensembles in panels of their own, one row of panels per split."""

import pandas as pd
import pytest
from matplotlib.colors import to_hex

from prodcat.report.plots import STAGE_COLOURS, accuracy_bars, accuracy_figure, ensemble_models

STAGES = {
    "byt5": ["raw", "corrected", "joint", "constrained"],
    "charngram": ["raw", "corrected", "joint"],  # no constrained decoding
    "ensemble": ["corrected", "joint", "constrained"],
    "ensemble_stack": ["corrected", "joint", "constrained"],
}


@pytest.fixture
def metrics() -> pd.DataFrame:
    rows = []
    for s, split in enumerate(["val", "test"]):
        rows.append({"model": "majority", "stage": "baseline", "split": split, "item_accuracy": 0.05})
        for m, (model, stages) in enumerate(STAGES.items()):
            for k, stage in enumerate(stages):
                accuracy = round(0.1 + 0.1 * m + 0.02 * k + 0.01 * s, 3)
                rows.append({"model": model, "stage": stage, "split": split, "item_accuracy": accuracy})
    return pd.DataFrame(rows)


def bars(ax) -> dict:
    """{(model, stage): bar} of one panel (each bar's gid is MODEL:STAGE)."""
    return {tuple(p.get_gid().split(":")): p for p in ax.patches if p.get_gid()}


def test_rows_per_split_and_ensembles_in_their_own_panel(metrics):
    fig = accuracy_figure(metrics, ensembles=["ensemble", "ensemble_stack"])
    assert fig.axes[0].get_gridspec().get_geometry() == (2, 2)
    for ax, split, group in zip(
        fig.axes, ["val", "val", "test", "test"], ["single", "ensembles", "single", "ensembles"]
    ):
        assert ax.get_title().startswith(f"{split}: {'single labelers' if group == 'single' else 'ensembles'}")
        ticks = [t.get_text() for t in ax.get_xticklabels()]
        assert ticks == (["byt5", "charngram"] if group == "single" else ["ensemble", "ensemble_stack"])
        # every (model, stage) of this split and group is one bar of its accuracy; the baseline is no bar
        part = metrics[(metrics["split"] == split) & metrics["model"].isin(ticks)]
        expected = dict(zip(zip(part["model"], part["stage"]), part["item_accuracy"]))
        assert {key: bar.get_height() for key, bar in bars(ax).items()} == pytest.approx(expected)
        # the baseline is a dashed line at its accuracy in every panel
        (line,) = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
        assert line.get_ydata()[0] == pytest.approx(0.05)
    assert fig.axes[0].get_ylabel().startswith("item accuracy")
    assert fig.get_suptitle() == "Item accuracy per model and stage"


def test_stages_side_by_side_within_a_model_in_one_colour_per_stage(metrics):
    fig = accuracy_figure(metrics)  # ensembles inferred from NAME_stack
    for ax in fig.axes:
        for i, model in enumerate(t.get_text() for t in ax.get_xticklabels()):
            mine = {stage: bar for (m, stage), bar in bars(ax).items() if m == model}
            assert list(mine) == [s for s in STAGE_COLOURS if s in STAGES[model]]  # stages in order
            for stage, bar in mine.items():
                # within the model's group at its tick, left to right in stage order, in the stage's colour
                assert i - 0.5 < bar.get_x() and bar.get_x() + bar.get_width() < i + 0.5
                assert to_hex(bar.get_facecolor()) == STAGE_COLOURS[stage]
            lefts = [bar.get_x() for bar in mine.values()]
            assert lefts == sorted(lefts)
    # a stage keeps its slot: charngram, without constrained, leaves that slot empty
    single = bars(fig.axes[0])
    assert single[("charngram", "joint")].get_x() - 1 == pytest.approx(single[("byt5", "joint")].get_x())


def test_legend_names_the_stages_present_the_baseline_and_the_submission(metrics):
    fig = accuracy_figure(metrics, submitted=("ensemble_stack", "corrected"))
    (legend,) = fig.legends
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels == [
        "raw",
        "corrected",
        "joint",
        "constrained",
        "majority-path baseline",
        "submitted (ensemble_stack, corrected)",
    ]
    for handle, stage in zip(legend.legend_handles, labels[:4]):
        assert to_hex(handle.get_facecolor()) == STAGE_COLOURS[stage]
    outlined = [key for ax in fig.axes for key, bar in bars(ax).items() if bar.get_linewidth() > 1]
    assert outlined == [("ensemble_stack", "corrected")] * 2  # on both splits
    # without constrained decoding or a baseline, the legend has only what is drawn
    fig = accuracy_figure(metrics[~metrics["stage"].isin(["constrained", "baseline"])])
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["raw", "corrected", "joint"]


def test_one_split_and_no_ensembles(metrics, tmp_path):
    part = metrics[(metrics["split"] == "val") & metrics["model"].isin(["byt5", "charngram", "majority"])]
    fig = accuracy_figure(part)
    assert len(fig.axes) == 1 and fig.axes[0].get_title() == "val: single labelers"
    accuracy_bars(metrics, tmp_path / "item_accuracy.svg")
    assert 'id="ensemble_stack:constrained"' in (tmp_path / "item_accuracy.svg").read_text()


def test_ensemble_models_pair_each_vote_with_its_stack():
    models = ["byt5", "ens", "ens_ngram", "ens_stack", "ens_ngram_stack"]
    assert ensemble_models(models) == ["ens", "ens_stack", "ens_ngram", "ens_ngram_stack"]
    assert ensemble_models(models, ["ens", "ens_ngram"]) == ["ens", "ens_ngram"]
