"""The report's front page names what ran: a banner for tiny stand-ins, or the real models with
their pinned revisions, rendered as Snakemake renders it (Jinja2, then reStructuredText)."""

from pathlib import Path

import yaml
from docutils.core import publish_parts
from jinja2 import Environment
from tests.test_rebuilds import deep_merge

REPO = Path(__file__).resolve().parents[1]


def front_page(config: dict) -> str:
    class Snakemake:  # what Snakemake hands the workflow description
        pass

    Snakemake.config = config
    text = (REPO / "report" / "workflow.rst").read_text()
    rst = Environment(trim_blocks=True, lstrip_blocks=True).from_string(text).render(snakemake=Snakemake)
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
