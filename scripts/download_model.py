"""Snakemake entry point: see prodcat.workflow.download_model."""

from prodcat.workflow import download_model

download_model(snakemake)  # noqa: F821 (injected by Snakemake)
