"""Real worker processes for tests that kill them: ``python -m worker`` configured only through
WALLETFLOW_* variables (as in production), on a task queue of the test's own."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import signal
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.services import Stack

REPO = Path(__file__).resolve().parents[1]
#: How long a test waits for a worker to log a line (a worker start trains the built-in risk
#: model, which takes a while on a busy machine).
LINE_TIMEOUT_S = 120


#: The built-in risk models (credit and usage), trained once per test session and saved as a
#: signed artifact, so that each spawned worker loads them in a moment instead of training its own.
_risk_model_env: dict[str, str] = {}


async def risk_model_env() -> dict[str, str]:
    if not _risk_model_env:
        from walletflow.risk.artifact import save
        from walletflow.risk.scoring import builtin_model, builtin_usage_model

        key = uuid.uuid4().hex
        model = copy.copy(await asyncio.to_thread(builtin_model))  # the cached one stays as it is
        model.usage = await asyncio.to_thread(builtin_usage_model)  # one artifact holds both
        path = save(model, Path(tempfile.mkdtemp(prefix="walletflow-test-risk-")), key)
        _risk_model_env.update(WALLETFLOW_RISK_MODEL_PATH=str(path), WALLETFLOW_RISK_MODEL_SIGNING_KEY=key)
    return _risk_model_env


async def spawn_worker(stack: Stack, task_queue: str, **extra_env: str) -> asyncio.subprocess.Process:
    """``python -m worker`` configured only through WALLETFLOW_* variables, as in production."""
    env = {
        **os.environ,
        **await risk_model_env(),
        "WALLETFLOW_DATABASE_URL": stack.settings.database_url,
        "WALLETFLOW_TEMPORAL_ADDRESS": stack.settings.temporal_address,
        "WALLETFLOW_TASK_QUEUE": task_queue,
        "WALLETFLOW_STRIPE_API_BASE": stack.settings.stripe_api_base or "",
        "WALLETFLOW_STRIPE_API_KEY": stack.settings.stripe_api_key,
        # Hand the dead worker's cached workflows to the live one after 1 s instead of 10.
        "WALLETFLOW_WORKER_STICKY_TIMEOUT_S": "1",
        # The same risk limits as the test stack (and its allowlisted shared test card).
        "WALLETFLOW_RISK_REVIEW_AMOUNT": str(stack.settings.risk_review_amount),
        "WALLETFLOW_RISK_REJECT_AMOUNT": str(stack.settings.risk_reject_amount),
        "WALLETFLOW_RISK_MODEL_REJECT_SCORE": str(stack.settings.risk_model_reject_score),
        "WALLETFLOW_RISK_SHARED_CARD_ALLOWLIST": json.dumps(list(stack.settings.risk_shared_card_allowlist)),
        **extra_env,
    }
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "worker", cwd=REPO, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )


async def wait_for_line(proc: asyncio.subprocess.Process, marker: str, timeout_s: float = LINE_TIMEOUT_S) -> None:
    assert proc.stderr is not None

    async def read() -> None:
        while True:
            line = await proc.stderr.readline()  # type: ignore[union-attr]
            if not line:
                raise AssertionError(f"worker exited before logging {marker!r}")
            if marker in line.decode(errors="replace"):
                return

    await asyncio.wait_for(read(), timeout_s)


async def drain(proc: asyncio.subprocess.Process) -> None:
    """Keep reading a worker's log so a full pipe never blocks it."""
    assert proc.stderr is not None
    while await proc.stderr.readline():
        pass


async def kill(proc: asyncio.subprocess.Process) -> None:
    proc.send_signal(signal.SIGKILL)
    await proc.wait()


@dataclass
class CrashRun:
    """A worker that pauses at ``point`` on a task queue of its own, and its replacement."""

    stack: Stack
    point: str
    task_queue: str
    first: asyncio.subprocess.Process
    second: asyncio.subprocess.Process | None = None
    draining: asyncio.Task[None] | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    def app(self, **overrides: object) -> Any:
        # A killed worker's step is retried after the call timeout: 8 s here instead of 30.
        return self.stack.http_for(self.stack.app_with(task_queue=self.task_queue, topup_call_timeout_s=8, **overrides))

    async def crash(self) -> None:
        """Once the first worker pauses at its point: start the replacement (as in a deployment
        with several workers), then kill the first (SIGKILL)."""
        await wait_for_line(self.first, f"crash test: pausing {self.point}")
        self.second = await spawn_worker(self.stack, self.task_queue, **self.extra_env)
        await wait_for_line(self.second, "worker running")
        self.draining = asyncio.create_task(drain(self.second))
        await kill(self.first)


@asynccontextmanager
async def crash_test(stack: Stack, point: str, **extra_env: str) -> AsyncIterator[CrashRun]:
    """A worker that pauses at ``point`` (see ``walletflow.settings.crash_pause_at``); ``extra_env``
    goes to it and to its replacement."""
    task_queue = f"walletflow-crash-{uuid.uuid4().hex[:8]}"
    first = await spawn_worker(stack, task_queue, WALLETFLOW_CRASH_PAUSE_AT=point, WALLETFLOW_CRASH_PAUSE_S="60",
                               **extra_env)
    run = CrashRun(stack, point, task_queue, first, extra_env=extra_env)
    try:
        # Work starts once the worker polls: a slow start must not eat the API's short waits.
        await wait_for_line(first, "worker running")
        yield run
    finally:
        for proc in (run.first, run.second):
            if proc is not None and proc.returncode is None:
                await kill(proc)
        if run.draining is not None:
            await run.draining


