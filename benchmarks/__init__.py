"""Benchmarks (``make bench``): each prints its figures and ratios against a floor measured in the same run."""
