"""Benchmarks of the gateway against baselines started by the same command (bench/README.md)."""
