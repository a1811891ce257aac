"""Correlation: the service dependency graph and grouping alerts into incidents."""
