"""Benchmarks of mvreml (issue 8): problem generation, runner, results."""
