"""Benchmarks: `python -m benchmarks NAME` (contract in DESIGN.md)."""
