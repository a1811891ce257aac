"""Benchmarks for `make bench` (`python -m tests.bench.run`): they print figures, assert nothing."""
