"""Benchmark scripts: each prints measured figures and ratios against a baseline run alongside."""
