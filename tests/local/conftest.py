"""Tests of the embedded model. Each module is marked `local_model`, so tests/conftest.py skips
them, with the reason, when the `local` extra is not installed."""
