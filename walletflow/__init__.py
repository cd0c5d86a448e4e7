"""walletflow: a self-hosted, real-time wallet billing engine for AI products."""

__version__ = "0.1.0"
