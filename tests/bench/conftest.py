"""Shared-data fixtures for the benchmark tests (the same as the command-line tests')."""

from tests.lfr.conftest import shared_data

__all__ = ["shared_data"]
