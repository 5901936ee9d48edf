"""Benchmarks behind ``lfr bench``: each measures the project against a baseline in the same run."""
