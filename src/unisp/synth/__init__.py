"""Synthetic RAW: unprocessing sRGB photos into camera mosaics (Brooks et al., CVPR 2019)."""
