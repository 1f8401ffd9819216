"""zoo's version: one place, read by setup.cfg and by every module that records it."""

__version__ = "0.2.0"
