"""Snakemake entry point: see prodcat.workflow.build_tiny_model."""

from prodcat.workflow import build_tiny_model

build_tiny_model(snakemake)  # noqa: F821 (injected by Snakemake)
