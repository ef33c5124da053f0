"""Snakemake entry point: see prodcat.workflow.level_accuracy."""

from prodcat.workflow import level_accuracy

level_accuracy(snakemake)  # noqa: F821 (injected by Snakemake)
