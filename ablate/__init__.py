"""ablate: split a G-CNN's accuracy gain into a weight-repetition share and an equivariance share."""

__version__ = "0.1.0"
