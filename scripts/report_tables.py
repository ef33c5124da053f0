"""Snakemake entry point: see prodcat.workflow.report_tables."""

from prodcat.workflow import report_tables

report_tables(snakemake)  # noqa: F821 (injected by Snakemake)
