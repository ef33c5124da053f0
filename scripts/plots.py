"""Snakemake entry point: see prodcat.workflow.plots."""

from prodcat.workflow import plots

plots(snakemake)  # noqa: F821 (injected by Snakemake)
