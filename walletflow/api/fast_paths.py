"""``POST /v1/authorizations`` without FastAPI's routing and dependency machinery.

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
"""

from __future__ import annotations

from pydantic import ValidationError as PydanticValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from walletflow.api.deps import contains_nul, idempotency_key
from walletflow.api.problems import problem, problem_for_exception
from walletflow.api.routers.authorizations import AuthorizationIn, AuthorizationOut
from walletflow.errors import ValidationError, WalletflowError

PATH = "/v1/authorizations"
MAX_KEY_LENGTH = 255  # the Idempotency-Key header's limit on the FastAPI route


class _Route:
    """What :class:`walletflow.observability.http.RequestMetrics` reads to label the request."""

    path_format = PATH


class FastAuthorizations:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        #: Requests this middleware answered itself (the rest went on to the app).
        self.answered = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != PATH:
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        readable = await self._readable(scope, body)
        if readable is None:
            await self.app(scope, _replay(body), send)
            return
        request, key = readable
        self.answered += 1
        scope["route"] = _Route
        try:
            hold = await scope["app"].state.services.ledger.authorize(
                request.customer_id, request.asset, request.amount, key,
                expires_in_s=request.expires_in_s, metadata=request.metadata,
            )
        except WalletflowError as exc:  # answered as the app's handlers would
            await problem(exc.status, exc.code, exc.title, exc.detail, **exc.extra)(scope, _replay(b""), send)
            return
        except Exception as exc:  # noqa: BLE001
            await problem_for_exception(exc, "POST", PATH)(scope, _replay(b""), send)
            return
        body = AuthorizationOut.of(hold).model_dump_json().encode()
        await send({
            "type": "http.response.start", "status": 201,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        })
        await send({"type": "http.response.body", "body": body})

    async def _readable(self, scope: Scope, body: bytes) -> tuple[AuthorizationIn, str] | None:
        """The request, when it is well formed and its key may authorize; else None (the app
        answers it)."""
        headers = dict(scope["headers"])
        auth = headers.get(b"authorization", b"")
        scheme, _, token = auth.partition(b" ")
        if scheme.lower() != b"bearer" or not token:
            return None
        if scope.get("query_string") or contains_nul(scope.get("raw_path", b""), body):
            return None
        key_info = await scope["app"].state.services.keys.authenticate(token.decode("latin-1"))
        if key_info is None or not key_info.allows("ingest"):
            return None
        try:
            parsed = AuthorizationIn.model_validate_json(body)
        except (PydanticValidationError, ValueError):
            return None
        header_key = headers.get(b"idempotency-key")
        header = None if header_key is None else header_key.decode("latin-1")
        if header is not None and len(header) > MAX_KEY_LENGTH:
            return None
        try:
            return parsed, idempotency_key(parsed.idempotency_key, header)  # the route's own rule
        except ValidationError:
            return None


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
