"""Benchmarks: `python -m bench.<name>` prints its figures as JSON lines on stdout."""
