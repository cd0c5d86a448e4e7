"""A real walletflow API over HTTP (uvicorn in this process, on a free port) for each backend."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest_asyncio
import uvicorn
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.services import free_port
from walletflow.api.app import create_app


@dataclass
class LiveApi:
    url: str
    admin_key: str
    read_key: str
    app: FastAPI


@contextlib.asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a free port of 127.0.0.1 until the block ends; yields its URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # raises why it could not start
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def live_api(engine: AsyncEngine) -> AsyncIterator[LiveApi]:
    app = create_app(engine)
    keys = app.state.services.keys
    _, admin = await keys.create("client-tests", "admin")
    _, read = await keys.create("client-tests-read", "read")
    async with serve(app) as url:
        yield LiveApi(url, admin, read, app)
