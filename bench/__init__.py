"""Benchmarks for `make bench` (§12): every figure a ratio against a baseline run alongside."""
