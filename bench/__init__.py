"""Benchmarks (`make bench`): each module measures against a reference taken in the same run."""
