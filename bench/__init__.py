"""Benchmarks and calibration scripts for the image analysis (registration/)."""
