"""The ``fraudlab`` command line."""

from fraudlab.cli.main import cli, main

__all__ = ["cli", "main"]
