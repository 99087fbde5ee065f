"""regards-order: deliver every file of a REGARDS order, verified, to any fsspec target."""

__version__ = "0.1.0"
