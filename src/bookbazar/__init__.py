"""Book Bazar: an online bookstore backend."""

__version__ = "0.1.0"
