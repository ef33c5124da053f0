"""Snakemake entry point: see prodcat.workflow.name_quality."""

from prodcat.workflow import name_quality

name_quality(snakemake)  # noqa: F821 (injected by Snakemake)
