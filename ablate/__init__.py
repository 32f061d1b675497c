"""ablate: split a G-CNN's accuracy gain into a weight-repetition share and an equivariance share."""

from importlib.metadata import version

__version__ = version("ablate")  # one place: pyproject.toml
