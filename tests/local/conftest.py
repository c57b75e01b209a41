"""Tests of the embedded model. tests/conftest.py marks everything here `local_model` and skips it,
with the reason, when the `local` extra is not installed."""
