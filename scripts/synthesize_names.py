"""Snakemake entry point: see prodcat.workflow.synthesize_names."""

from prodcat.workflow import synthesize_names

synthesize_names(snakemake)  # noqa: F821 (injected by Snakemake)
