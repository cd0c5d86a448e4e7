"""The two hot routes, ``POST /v1/authorizations`` and ``POST /v1/events``, without FastAPI's
routing and dependency machinery.

Why: an authorization is the call an AI product makes before every expensive request, so its
latency is the product's. Profiling the API under 32 concurrent authorizations (py-spy,
bench.ingest) put about 60% of the server's CPU in FastAPI and Starlette (route matching,
dependency solving, request and response plumbing) and about 30% in the endpoint's own work.

This ASGI middleware answers that one route itself with the same parts the FastAPI route uses:
the same API key check, the same request and response models (``AuthorizationIn`` and
``AuthorizationOut``, so the OpenAPI schema stays the route's), the same ``Ledger.authorize``
and the same problem+json errors. It only takes requests it can read cleanly: anything else
(no or a bad API key, NUL characters, malformed JSON, a field out of range, disagreeing
idempotency keys) goes on to the FastAPI app unchanged, which answers exactly as before. Every
API test that posts an authorization therefore passes through here; the bad-input tests prove
the hand-over.

Usage batches go the same way for a related reason: in bench.ingest the server spent about 20 ms
of every 1,000-event batch outside the endpoint (JSON to dicts, validating the union of event and
dict for each event, re-validating the 1,000 results on the way out, then ``json.dumps``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable

import orjson
from pydantic import BaseModel, Field, TypeAdapter
from pydantic import ValidationError as PydanticValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from walletflow.api.deps import contains_nul, idempotency_key
from walletflow.api.problems import problem_for_exception
from walletflow.api.routers.authorizations import AuthorizationIn, AuthorizationOut
from walletflow.errors import ValidationError
from walletflow.observability import metrics
from walletflow.usage.schemas import MAX_BATCH, EventIn

MAX_KEY_LENGTH = 255  # the Idempotency-Key header's limit on the FastAPI route


class FastPost(ABC):
    """An ASGI middleware answering ``POST {path}`` itself when the request is clean (a bearer
    key with the scope, no query string, no NUL, a body its handler can read); anything else goes
    on to the FastAPI app unchanged. Subclasses give the path, the scope and the handler."""

    path: str
    scope_name: str

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        #: Requests this middleware answered itself (the rest went on to the app).
        self.answered = 0
        self._route = type("Route", (), {"path_format": self.path})  # what RequestMetrics labels by

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        answer = await self._answer(scope, body) if await self._authorized(scope, body) else None
        if answer is None:
            await self.app(scope, _replay(body), send)
            return
        self.answered += 1
        scope["route"] = self._route
        try:
            status, payload = await answer()
        except Exception as exc:  # noqa: BLE001 - answered as the app's handlers would
            await problem_for_exception(exc, "POST", self.path)(scope, _replay(b""), send)
            return
        await send({
            "type": "http.response.start", "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
        })
        await send({"type": "http.response.body", "body": payload})

    async def _authorized(self, scope: Scope, body: bytes) -> bool:
        auth = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, token = auth.partition(b" ")
        if scheme.lower() != b"bearer" or not token:
            return False
        if scope.get("query_string") or contains_nul(scope.get("raw_path", b""), body):
            return False
        key_info = await scope["app"].state.services.keys.authenticate(token.decode("latin-1"))
        return key_info is not None and key_info.allows(self.scope_name)

    @abstractmethod
    async def _answer(self, scope: Scope, body: bytes) -> Answer | None:
        """The work that answers this request (status and JSON body), or None when the request
        is not one this path reads cleanly (the app answers it)."""


#: Runs the request: (status, JSON body). Raises what the route would raise.
Answer = Callable[[], Awaitable[tuple[int, bytes]]]


class FastAuthorizations(FastPost):
    path = "/v1/authorizations"
    scope_name = "ingest"

    async def _answer(self, scope: Scope, body: bytes) -> Answer | None:
        try:
            request = AuthorizationIn.model_validate_json(body)
        except (PydanticValidationError, ValueError):
            return None
        header_key = dict(scope["headers"]).get(b"idempotency-key")
        header = None if header_key is None else header_key.decode("latin-1")
        if header is not None and len(header) > MAX_KEY_LENGTH:
            return None
        try:
            key = idempotency_key(request.idempotency_key, header)  # the route's own rule
        except ValidationError:
            return None
        ledger = scope["app"].state.services.ledger

        async def answer() -> tuple[int, bytes]:
            hold = await ledger.authorize(
                request.customer_id, request.asset, request.amount, key,
                expires_in_s=request.expires_in_s, metadata=request.metadata,
            )
            return 201, AuthorizationOut.of(hold).model_dump_json().encode()

        return answer


class FastEvents(FastPost):
    """``POST /v1/events`` when every event in the batch is valid: the body is validated straight
    from its JSON bytes (pydantic-core's parser, no intermediate dicts) and the results, plain
    tuples, written by orjson in ``EventResult``'s shape. A batch with any invalid event goes to
    the route, which reports each bad event as ``rejected`` in its own result."""

    path = "/v1/events"
    scope_name = "ingest"

    async def _answer(self, scope: Scope, body: bytes) -> Answer | None:
        try:
            batch = _STRICT_BATCH.validate_json(body)
        except (PydanticValidationError, ValueError):
            return None
        usage = scope["app"].state.services.usage

        async def answer() -> tuple[int, bytes]:
            outcomes = await usage.ingest_outcomes(batch.events)
            metrics.count_ingested(outcomes)
            return 200, orjson.dumps({"results": [o.as_json() for o in outcomes]})

        return answer


class _ValidBatch(BaseModel):
    """``EventBatchIn`` without the per-event dict fallback: every event must be valid."""

    events: list[EventIn] = Field(min_length=1, max_length=MAX_BATCH)


_STRICT_BATCH = TypeAdapter(_ValidBatch)


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes) -> Receive:
    """A ``receive`` that hands the app the body this middleware already read."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive
