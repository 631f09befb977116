"""p2phpo: peer-to-peer hyperparameter search with no central coordinator."""

__version__ = "0.1.0"
