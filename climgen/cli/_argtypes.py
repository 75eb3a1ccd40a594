"""argparse value types and options shared by the subcommand modules of :mod:`climgen.cli`."""

from __future__ import annotations

import argparse

__all__ = ["positive_int", "positive_float", "add_quiet"]


def positive_int(text: str) -> int:
    """An integer ≥ 1, or an argparse error quoting the value given."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def positive_float(text: str) -> float:
    """A number > 0, or an argparse error quoting the value given."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def add_quiet(parser: argparse.ArgumentParser, help: str = "no progress bars and no summary table"):
    """Add ``-q/--quiet`` to ``parser`` (call it first, so it is listed right after ``-h``)."""
    parser.add_argument("-q", "--quiet", action="store_true", help=help)
