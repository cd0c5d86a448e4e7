"""The real app over ASGI with keys of every scope (the same fixtures as tests/api)."""

from tests.api.conftest import app, client, keys  # noqa: F401
