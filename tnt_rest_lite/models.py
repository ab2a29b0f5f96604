"""Imports every architecture module so that their entry points are registered."""

from . import deit, rest, tnt  # noqa: F401

__all__ = ["deit", "rest", "tnt"]
