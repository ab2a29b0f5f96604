"""Imports every architecture module so that their entry points are registered."""

from . import deit  # noqa: F401
from . import tnt  # noqa: F401

__all__ = ["deit", "tnt"]
