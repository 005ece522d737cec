"""c1222: a Python implementation of ANSI C12.22 (IEEE 1703) metering."""

__version__ = "0.1.0"
