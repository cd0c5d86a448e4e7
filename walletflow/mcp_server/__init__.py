"""``walletflow mcp``: an MCP server that lets an AI assistant set up billing through the API.

Named ``mcp_server`` so that it never shadows the MCP SDK's top-level ``mcp`` package.
"""
