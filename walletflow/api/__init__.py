"""The HTTP API (FastAPI). Contract: shared/API.md."""
