"""Helpers for driving the MCP server from the SDK's ClientSession."""

from __future__ import annotations

import json
import sys
from typing import Any

from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters


def stdio_params(api_url: str, api_key: str) -> StdioServerParameters:
    """``python -m walletflow.cli mcp --transport stdio`` with the API in its environment, as an
    MCP client configuration would start it."""
    return StdioServerParameters(
        command=sys.executable, args=["-m", "walletflow.cli", "mcp", "--transport", "stdio"],
        env={"WALLETFLOW_MCP_API_URL": api_url, "WALLETFLOW_MCP_API_KEY": api_key},
    )


async def call(session: ClientSession, name: str, /, **arguments: Any) -> Any:
    """Call a tool that must succeed; returns its JSON result."""
    result = await session.call_tool(name, arguments)
    assert not result.is_error, f"{name} failed: {result.content}"
    if result.structured_content is not None:
        return result.structured_content
    return json.loads(result.content[0].text)  # type: ignore[union-attr]


async def call_error(session: ClientSession, name: str, /, **arguments: Any) -> str:
    """Call a tool that must fail; returns the error text the model would read."""
    result = await session.call_tool(name, arguments)
    assert result.is_error, f"{name} unexpectedly succeeded: {result.content}"
    return result.content[0].text  # type: ignore[union-attr]
