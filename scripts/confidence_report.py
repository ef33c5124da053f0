"""Snakemake entry point: see prodcat.workflow.confidence_report."""

from prodcat.workflow import confidence_report

confidence_report(snakemake)  # noqa: F821 (injected by Snakemake)
