"""Snakemake entry point: see prodcat.workflow.infer_names."""

from prodcat.workflow import infer_names

infer_names(snakemake)  # noqa: F821 (injected by Snakemake)
