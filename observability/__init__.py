"""Metrics for /metrics."""
