"""The edgetl version (pyproject.toml reads it; cards and bundles record it)."""
__version__ = "0.1.0"
