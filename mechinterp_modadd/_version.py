"""The package version, kept in this one place (pyproject reads it through ``tool.setuptools.dynamic``)."""

__version__ = "0.1.0"
