"""The version of sweep: read by the package, its metadata and every trial's record."""

__version__ = "0.1.0"
