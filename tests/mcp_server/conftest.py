"""The MCP tests drive ``walletflow mcp`` with the official MCP client SDK against a real API."""

from tests.client.conftest import live_api  # noqa: F401 (a fixture, shared with the client tests)
