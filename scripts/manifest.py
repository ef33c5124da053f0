"""Snakemake entry point: see prodcat.workflow.manifest."""

from prodcat.workflow import manifest

manifest(snakemake)  # noqa: F821 (injected by Snakemake)
