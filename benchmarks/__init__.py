"""Benchmarks for juhe-sync: a realistic data generator and an HTTP benchmark runner."""
