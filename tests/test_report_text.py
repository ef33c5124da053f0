"""The report's front page names what ran: a banner for tiny stand-ins, or the real models with
their pinned revisions, and the labelers, stages, ensembles and submitted model of the config; so do
the captions that name models. Rendered as Snakemake renders them (Jinja2, then reStructuredText),
here with undefined names an error."""

import copy
from pathlib import Path

import pytest
import yaml
from docutils.core import publish_parts
from jinja2 import Environment, StrictUndefined
from tests.test_rebuilds import deep_merge

REPO = Path(__file__).resolve().parents[1]


def front_page(config: dict) -> str:
    return rendered("workflow.rst", config)


def rendered(name: str, config: dict) -> str:
    """report/NAME as HTML; the workflow description and the captions both get `snakemake.config`."""

    class Snakemake:  # what Snakemake hands the workflow description (a caption's has more)
        pass

    Snakemake.config = config
    text = (REPO / "report" / name).read_text()
    env = Environment(trim_blocks=True, lstrip_blocks=True, undefined=StrictUndefined)
    rst = env.from_string(text).render(snakemake=Snakemake)
    html = publish_parts(rst, writer="html", settings_overrides={"halt_level": 2, "report_level": 2})["html_body"]
    return " ".join(html.split())


def config_of(*files: str) -> dict:
    merged = {}
    for name in files:
        merged = deep_merge(merged, yaml.safe_load((REPO / name).read_text()))
    return merged


def test_default_run_says_tiny_stand_ins_and_names_what_they_stand_in_for():
    page = front_page(config_of("config.yaml"))
    assert "Tiny stand-ins, not the real models." in page and 'class="admonition warning"' in page
    assert "for byt5, flant5, llama." in page


def test_paper_run_names_the_real_models_and_their_revisions():
    cfg = config_of("config.yaml", "configs/paper.yaml")
    page = front_page(cfg)
    assert "stand-in" not in page.split("Validation scores")[0]
    for spec in cfg["base_models"].values():
        assert spec["id"] in page and spec["revision"][:12] in page


def test_local_model_folders_are_named_and_stand_ins_say_what_they_stand_in_for():
    cfg = config_of("config.yaml", "configs/paper.yaml")
    cfg["base_models"]["byt5"] = {"path": "/models/byt5"}
    assert 'byt5: <tt class="docutils literal">/models/byt5</tt> (a local folder)' in front_page(cfg)
    cfg["tiny"]["enabled"] = True
    assert 'for byt5 (<tt class="docutils literal">/models/byt5</tt> (a local folder)), flant5 (' in front_page(cfg)


def literal(text: str) -> str:
    return f'<tt class="docutils literal">{text}</tt>'


def submitted(cfg: dict) -> str:
    """The submitted model, as rules/common.smk's SUBMIT_MODEL ("auto": chosen by the run)."""
    ensemble = cfg["ensemble"]
    if ensemble["submit"] == "auto":
        return "auto"
    return {"vote": ensemble["submit"], "stack": f"{ensemble['submit']}_stack"}[ensemble.get("method", "vote")]


@pytest.mark.parametrize(
    ("files", "model", "stage"),
    [
        (["config.yaml"], "auto", "corrected"),
        (["config.yaml", "configs/paper.yaml"], "ensemble", "corrected"),
    ],
)
def test_description_names_every_labeler_ensemble_and_the_submitted_model(files, model, stage):
    cfg = config_of(*files)
    page = front_page(cfg)
    assert submitted(cfg) == model  # the configs still submit what this test expects
    for name in cfg["labelers"]:
        assert f"<strong>{name}</strong>:" in page
    assert f'(<tt class="docutils literal">labelers</tt>, {len(cfg["labelers"])})' in page
    for name, members in cfg["ensemble"]["members"].items():
        assert f"<strong>{name}</strong> ({', '.join(members)})" in page
        assert f"as {literal(name)}, and by the learned arbiter as {literal(name + '_stack')}" in page
    if model == "auto":  # chosen by validation accuracy when the run ends: the page says how
        assert "<strong>Submitted:</strong> the ensemble and method (vote or stack) with the best validation" in page
        assert literal("ensemble.submit: auto") in page and literal("submission/MODEL.predict") in page
    else:
        assert f"<strong>Submitted:</strong> {literal(model)} at stage {literal(stage)}" in page
        assert literal(f"submission/{model}.predict") in page
    assert "charngram</strong>: character n-gram" in page
    assert "byt5, mmbyt5, flant5 decoding under a prefix trie" in page
    assert "three seq2seq labelers" not in page
    assert "mailto" not in page  # Datathon@IndoML is no e-mail address
    if model != "auto":
        method = "the learned arbiter" if model.endswith("_stack") else "the hard vote"
        assert f"combined by {method} (" in page
    splits = "on validation and test" if cfg["data"]["test_labels"] else "on validation only"
    assert f"Table 1, {splits}" in page


def test_description_hard_codes_no_labeler_the_config_lacks():
    cfg = copy.deepcopy(config_of("config.yaml", "configs/paper.yaml"))
    cfg["labelers"] = {"bytes": cfg["labelers"]["byt5"]}
    cfg["base_models"] = {"byt5": cfg["base_models"]["byt5"]}
    cfg["ensemble"] = {"members": {"solo": ["bytes"]}, "submit": "solo"}  # method: the schema's default, vote
    cfg["decoding"]["constrained"] = False
    cfg["correction"] = {"method": "joint"}
    page = front_page(cfg)
    lowered = page.lower()
    for absent in ("flant5", "flan-t5", "mmbyt5", "multimodal", "charngram", "n-gram", "llama", "namer", "teacher"):
        assert absent not in lowered, absent
    assert "constrained" not in lowered and "ensemble_" not in lowered
    assert "<strong>bytes</strong>: ByT5 (seq2seq) on the description." in page
    assert f"<strong>Submitted:</strong> {literal('solo')} at stage {literal('joint')}" in page
    assert "combined by the hard vote (" in page
    assert "salvage" not in lowered and "malformed" not in page
    cfg["ensemble"]["weighted"] = True
    assert "combined by the weighted vote (by each member" in front_page(cfg)


@pytest.mark.parametrize("files", [["config.yaml"], ["config.yaml", "configs/paper.yaml"]])
def test_captions_name_the_configured_models_and_the_submission(files):
    cfg = config_of(*files)
    captions = {path.name: rendered(path.name, cfg) for path in sorted((REPO / "report").glob("*.rst"))}
    assert {"accuracy.rst", "metrics.rst", "curves.rst", "workflow.rst"} <= set(captions)
    for name in ("accuracy.rst", "metrics.rst"):
        page = captions[name]
        assert ", ".join(cfg["labelers"]) in page
        assert all(ensemble in page for ensemble in cfg["ensemble"]["members"])
        named = "ensemble.submit: auto" if submitted(cfg) == "auto" else literal(submitted(cfg))
        assert named in page and f"ensemble.method: {cfg['ensemble']['method']}" in page
        assert ("validation and test" if cfg["data"]["test_labels"] else "the test labels are hidden") in page
    assert "constrained" in captions["accuracy.rst"] and "hard vote (NAME) beside" in captions["accuracy.rst"]
    assert "per-level accuracy" not in captions["metrics.rst"]  # Table 1 has macro F1 per level, no accuracy
    assert (
        "(byt5, mmbyt5, flant5, namer)" in captions["curves.rst"] and "n-gram labeler has no" in captions["curves.rst"]
    )
    for page in captions.values():
        assert "three" not in page and "mailto" not in page


def test_captions_follow_a_config_without_constrained_decoding_charngram_or_names():
    cfg = copy.deepcopy(config_of("config.yaml"))
    cfg["labelers"] = {"byt5": cfg["labelers"]["byt5"]}
    cfg["ensemble"].update(members={"solo": ["byt5"]}, submit="solo", method="vote", weighted=True)
    cfg["decoding"]["constrained"] = False
    accuracy, metrics, curves = (rendered(name, cfg) for name in ("accuracy.rst", "metrics.rst", "curves.rst"))
    for page in (accuracy, metrics):
        assert "constrained" not in page and "flant5" not in page and "charngram" not in page
        assert literal("solo") in page and "weighted vote" in page
    assert "(byt5)" in curves and "namer" not in curves and "n-gram" not in curves
