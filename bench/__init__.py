"""Benchmarks for `make bench`: every figure a ratio against a baseline run alongside."""
