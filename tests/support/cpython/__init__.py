"""The drivers of CPython's own test suites, run on rselectors and on the stdlib."""
