"""Measurements of trained models: gradient reach, and comparisons of training variants."""
