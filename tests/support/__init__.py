"""Helpers the test folders share, imported as `support.<module>` (tests/ is on sys.path:
pyproject.toml's pytest `pythonpath`); tests/README.md lists them."""
