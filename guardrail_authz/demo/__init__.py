"""The demo upstream used by `make run` and the end-to-end tests."""
