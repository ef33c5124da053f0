"""Snakemake entry point: see prodcat.workflow.choose_submission."""

from prodcat.workflow import choose_submission

choose_submission(snakemake)  # noqa: F821 (injected by Snakemake)
