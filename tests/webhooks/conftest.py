"""Fixtures for outbound webhooks: a real HTTP receiver that verifies signatures with the public
``verify``, and per backend the API plus a worker whose retry schedule is short.

The receiver is a uvicorn server on a free port (like the Stripe webhook server in
tests/services.py); each test makes its own receivers under ``/hooks/<name>`` with a script of
status codes to answer, and reads back what arrived.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import pytest_asyncio
import uvicorn
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.types import Receive, Scope, Send
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from tests.db import database_at
from tests.services import free_port
from walletflow.api.app import create_app
from walletflow.db.engine import create_engine, dispose
from walletflow.settings import Settings
from walletflow.temporal_client import connect
from walletflow.webhooks.contracts import DispatchReport, WebhookDispatchInput
from walletflow.webhooks.schemas import DeliveryInfo
from walletflow.webhooks.service import Webhooks
from walletflow.webhooks.signing import SIGNATURE_HEADER, SignatureVerificationError, verify
from worker.main import build_worker

#: The retry schedule of the tests: 4 attempts, 0.2 s, 0.4 s, 0.8 s apart.
MAX_ATTEMPTS = 4


@dataclass
class Arrival:
    headers: dict[str, str]
    body: bytes
    #: The event as ``verify`` returned it; None if the signature was refused.
    event: dict[str, Any] | None
    refused: str | None
    answered: int


@dataclass
class Receiver:
    """One platform endpoint: verifies every request, then answers from its script (then 200)."""

    name: str
    url: str
    secret: str = ""
    script: deque[int] = field(default_factory=deque)
    arrivals: list[Arrival] = field(default_factory=list)

    @property
    def verified(self) -> list[dict[str, Any]]:
        """Events whose signature verified and that were answered 2xx."""
        return [a.event for a in self.arrivals if a.event is not None and 200 <= a.answered < 300]


class ReceiverServer:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.receivers: dict[str, Receiver] = {}

    def new(self, *script: int) -> Receiver:
        name = uuid.uuid4().hex[:12]
        receiver = Receiver(name, f"{self.base_url}/hooks/{name}", script=deque(script))
        self.receivers[name] = receiver
        return receiver

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await Request(scope, receive).body()
        receiver = self.receivers.get(scope["path"].removeprefix("/hooks/"))
        status = 404
        if receiver is not None:
            headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            event, refused = None, None
            try:
                event = verify(body, headers.get(SIGNATURE_HEADER.lower()), receiver.secret)
                status = receiver.script.popleft() if receiver.script else 200
            except SignatureVerificationError as exc:
                refused, status = exc.reason, 400
            receiver.arrivals.append(Arrival(headers, body, event, refused, status))
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok" if status < 300 else b"no"})


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def receivers() -> AsyncIterator[ReceiverServer]:
    port = free_port()
    server_app = ReceiverServer(f"http://127.0.0.1:{port}")
    server = uvicorn.Server(uvicorn.Config(server_app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    yield server_app
    server.should_exit = True
    await task


@dataclass
class WebhookStack:
    backend: str
    settings: Settings
    client: Client
    engine: AsyncEngine
    app: FastAPI
    http: httpx.AsyncClient
    webhooks: Webhooks
    receivers: ReceiverServer
    endpoints: list[str] = field(default_factory=list)

    async def register(self, receiver: Receiver, events: list[str]) -> str:
        """``POST /v1/webhook-endpoints`` for ``receiver``; gives it the secret; returns the id."""
        response = await self.http.post("/v1/webhook-endpoints", json={"url": receiver.url, "events": events})
        assert response.status_code == 201, response.text
        receiver.secret = response.json()["secret"]
        self.endpoints.append(response.json()["id"])
        return response.json()["id"]

    async def dispatch(self, **params: Any) -> DispatchReport:
        """One run of the dispatch workflow, as the schedule would start it."""
        return await self.client.execute_workflow(
            "WebhookDispatchWorkflow", WebhookDispatchInput(**params), id=f"webhook-dispatch-test-{uuid.uuid4().hex}",
            task_queue=self.settings.task_queue, result_type=DispatchReport,
        )

    async def settled(
        self, endpoint_id: str, count: int = 1, timeout_s: float = 30, events: set[str] | None = None
    ) -> list[DeliveryInfo]:
        """The endpoint's deliveries once ``count`` exist and none is pending any more. With
        ``events``, only deliveries of those event ids count: a ``*`` endpoint also receives
        what other tests' workflows emit meanwhile into the shared database."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = await self.webhooks.list_deliveries(uuid.UUID(endpoint_id), 100)
            if events is not None:
                found = [d for d in found if str(d.event_id) in events]
            if len(found) >= count and all(d.status != "pending" for d in found):
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"deliveries of {endpoint_id} not settled after {timeout_s} s: {found}")
            await asyncio.sleep(0.1)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def wh(
    database_url: str, temporal_env: WorkflowEnvironment, receivers: ReceiverServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[WebhookStack]:
    """The webhook stack on a database of its own: every other test's workflows (top-ups,
    recharges, settlement, expiry) keep emitting platform events into the shared database, and
    a delivery test must see only the events it emitted itself."""
    backend = "postgresql" if database_url.startswith("postgresql") else "sqlite"
    async with database_at("head", backend, tmp_path_factory.mktemp("webhooks")) as own_url:
        engine = create_engine(own_url, pool_size=5) if backend == "postgresql" else create_engine(own_url)
        settings = Settings(
            database_url=own_url,
            temporal_address=temporal_env.client.service_client.config.target_host,
            task_queue=f"walletflow-webhooks-{backend}-{uuid.uuid4().hex[:6]}",
            webhook_timeout_s=5, webhook_max_attempts=MAX_ATTEMPTS, webhook_initial_interval_s=0.2,
            webhook_backoff_coefficient=2.0, webhook_max_interval_s=1.0,
        )
        client = await connect(settings)
        app = create_app(engine, settings=settings, temporal_client=client)
        _, admin_key = await app.state.services.keys.create("webhook-tests", "admin")
        http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
            base_url="http://walletflow.test", headers={"Authorization": f"Bearer {admin_key}"},
        )
        try:
            async with build_worker(client, engine, settings), http:
                stack = WebhookStack(backend, settings, client, engine, app, http, Webhooks(engine), receivers)
                yield stack
        finally:
            await dispose(engine)


@pytest_asyncio.fixture(loop_scope="session")
async def hooks(wh: WebhookStack) -> AsyncIterator[WebhookStack]:
    """The backend's webhook stack for one test; the test's endpoints are disabled afterwards,
    so later tests' events never go to its receivers."""
    yield wh
    for endpoint_id in wh.endpoints:
        await wh.http.delete(f"/v1/webhook-endpoints/{endpoint_id}")
    wh.endpoints.clear()
