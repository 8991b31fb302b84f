"""Benchmarks of guardrail-authz, run side by side in one process by `make bench`."""
