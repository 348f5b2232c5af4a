"""Datasets: Bayer-safe patches from RAW collections, paired and unpaired."""
