"""The aezoo version, at the floor of the import graph (any module may read it)."""

__version__ = "0.1.0"
