"""Metrics, the paper's tables and the figures."""
