"""Snakemake entry point: see prodcat.workflow.train_labeler."""

from prodcat.workflow import train_labeler

train_labeler(snakemake)  # noqa: F821 (injected by Snakemake)
