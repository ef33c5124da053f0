"""Snakemake entry point: see prodcat.workflow.gather_names."""

from prodcat.workflow import gather_names

gather_names(snakemake)  # noqa: F821 (injected by Snakemake)
