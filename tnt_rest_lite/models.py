"""Imports every architecture module so that their entry points are registered."""

from . import deit, resnet, rest, tnt  # noqa: F401

__all__ = ["deit", "resnet", "rest", "tnt"]
