"""Snakemake entry point: see prodcat.workflow.review_queue."""

from prodcat.workflow import review_queue

review_queue(snakemake)  # noqa: F821 (injected by Snakemake)
