"""A fault-injecting proxy in front of localstripe, with Stripe's idempotency keys.

Faults are planned per request (method and a path pattern) and used up in order:

- ``500``: answered 500 without reaching Stripe (nothing happened);
- ``429``: answered 429 rate limited without reaching Stripe;
- ``lost``: forwarded (Stripe did it), then the answer is lost: the client gets a 502;
- ``timeout``: forwarded (Stripe did it), then no answer until the client gives up.

Real Stripe replays the first answer to a request that repeats an ``Idempotency-Key`` (for 24
hours); localstripe ignores keys, so the proxy does it, as Stripe does, or a lost answer to a
create would make the SDK's own retry create a second object, which real Stripe never does.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field

import httpx
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

FAULTS = ("500", "429", "lost", "timeout")


@dataclass
class Planned:
    method: str
    path: re.Pattern[str]
    fault: str


@dataclass
class StripeFaults:
    upstream: str
    #: How long a ``timeout`` keeps the client waiting (longer than the client's own timeout).
    hang_s: float = 5.0
    plan: list[Planned] = field(default_factory=list)
    #: (method, path, outcome) of every request, for the tests to read.
    log: list[tuple[str, str, str]] = field(default_factory=list)
    _replays: dict[str, tuple[int, bytes]] = field(default_factory=dict)

    def inject(self, method: str, path: str, *faults: str) -> None:
        assert all(f in FAULTS for f in faults), faults
        self.plan += [Planned(method, re.compile(path), f) for f in faults]

    def used(self, fault: str) -> int:
        return sum(1 for _, _, outcome in self.log if outcome == fault)

    def _take(self, method: str, path: str) -> str | None:
        for planned in self.plan:
            if planned.method == method and planned.path.search(path):
                self.plan.remove(planned)
                return planned.fault
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await Request(scope, receive).body()
        method, path = scope["method"], scope["path"]
        query = scope.get("query_string", b"").decode()
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        key = headers.get("idempotency-key") if method == "POST" else None
        if key and key in self._replays:
            status, content = self._replays[key]
            self.log.append((method, path, "replayed"))
            await _answer(send, status, content, {"idempotent-replayed": "true"})
            return
        fault = self._take(method, path)
        if fault == "500":
            self.log.append((method, path, "500"))
            await _answer(send, 500, _error("api_error", "injected server error"))
            return
        if fault == "429":
            self.log.append((method, path, "429"))
            await _answer(send, 429, _error("rate_limit_error", "injected rate limit", code="rate_limit"))
            return
        forward = {k: v for k, v in headers.items() if k in ("authorization", "content-type", "idempotency-key", "stripe-version")}
        async with httpx.AsyncClient(base_url=self.upstream, timeout=30) as http:
            upstream = await http.request(method, path + (f"?{query}" if query else ""), content=body, headers=forward)
        if key and upstream.status_code < 500:
            self._replays[key] = (upstream.status_code, upstream.content)
        if fault == "lost":
            self.log.append((method, path, "lost"))
            await _answer(send, 502, _error("api_error", "injected: the answer was lost"))
            return
        if fault == "timeout":
            self.log.append((method, path, "timeout"))
            await asyncio.sleep(self.hang_s)
            await _answer(send, 504, _error("api_error", "injected: too late"))
            return
        self.log.append((method, path, str(upstream.status_code)))
        await _answer(send, upstream.status_code, upstream.content)


def _error(kind: str, message: str, code: str | None = None) -> bytes:
    return json.dumps({"error": {"type": kind, "message": message, **({"code": code} if code else {})}}).encode()


async def _answer(send: Send, status: int, content: bytes, extra: dict[str, str] | None = None) -> None:
    headers = [(b"content-type", b"application/json")] + [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})
