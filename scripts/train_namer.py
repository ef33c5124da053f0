"""Snakemake entry point: see prodcat.workflow.train_namer."""

from prodcat.workflow import train_namer

train_namer(snakemake)  # noqa: F821 (injected by Snakemake)
