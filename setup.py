"""Thin shim for `pip install -e .` with older tooling; all metadata is in pyproject.toml."""

from setuptools import setup

setup()
