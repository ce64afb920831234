"""Benchmarks (`make bench`): what the daemon costs per call, measured, compared to baselines."""
