"""Benchmarks (``misgen bench``): speed targets measured as ratios within one process."""
