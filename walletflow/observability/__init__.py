"""Prometheus metrics and structured JSON logs, shared by the API, the worker and ``walletflow dev``."""
