"""Snakemake entry point: see prodcat.workflow.train_charngram."""
from prodcat.workflow import train_charngram

train_charngram(snakemake)  # noqa: F821 (injected by Snakemake)
