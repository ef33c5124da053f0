"""Snakemake entry point: see prodcat.workflow.score_candidates."""

from prodcat.workflow import score_candidates

score_candidates(snakemake)  # noqa: F821 (injected by Snakemake)
