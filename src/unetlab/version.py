"""The version of unetlab (a leaf, so that any layer can record which unetlab wrote a file)."""

__version__ = "0.1.0"
