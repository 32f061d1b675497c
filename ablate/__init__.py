"""ablate: split a G-CNN's accuracy gain into a weight-repetition share and an equivariance share."""

from importlib.metadata import version

__version__ = version("ablate")  # one place: pyproject.toml
__all__ = ["build_report", "load_runs", "run_study", "triplet"]


def __getattr__(name: str):
    """The Python interface (ablate.api), imported on first use: `import ablate` loads no torch."""
    if name in __all__:
        from ablate import api

        return getattr(api, name)
    raise AttributeError(f"module 'ablate' has no attribute {name!r}")
