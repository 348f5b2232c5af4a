"""Evaluation: image-quality metrics."""
