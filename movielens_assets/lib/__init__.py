"""Helpers that define nothing: S3 and local CSV files."""
