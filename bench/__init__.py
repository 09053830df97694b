"""Benchmarks: tollgate against the direct upstream and a peer proxy, reported as ratios."""
