"""Benchmarks: `make bench` (python -m bench). Figures are measured, never asserted."""
