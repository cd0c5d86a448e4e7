"""``walletflow dev --demo`` end to end, as a newcomer runs it: the console script in a subprocess
on free ports, with its own data dir. It must come up, print an admin key, serve the API with
the demo's data, run the Temporal dev server with its web UI and the schedules, and stop every
process it started on SIGINT (and on SIGTERM); a second run on the same data dir must seed
nothing twice. The ``temporal`` binary missing is a failure here, never a skip."""

from __future__ import annotations

import datetime as dt
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from temporalio.client import Client, WorkflowExecutionStatus

from tests.services import free_port

WALLETFLOW = Path(sys.executable).with_name("walletflow")
READY = "Ctrl-C stops everything."


@dataclass
class DevRun:
    proc: subprocess.Popen[str]
    lines: list[str]
    api: str
    temporal: str
    ui: str
    key: str
    customer_id: str
    top_up_id: str


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (from /proc), including children that started their own session."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def start_dev(tmp_path: Path, ports: dict[str, int], log_name: str) -> DevRun:
    assert WALLETFLOW.exists(), f"the walletflow console script is missing next to {sys.executable}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WALLETFLOW_")}
    env["WALLETFLOW_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'walletflow.db'}"
    stderr = open(tmp_path / log_name, "w")  # noqa: SIM115 - the process owns it until it exits
    proc = subprocess.Popen(
        [str(WALLETFLOW), "dev", "--demo", "--api-port", str(ports["api"]), "--temporal-port", str(ports["temporal"]),
         "--ui-port", str(ports["ui"]), "--stripe-port", str(ports["stripe"]), "--data-dir", str(tmp_path / "data")],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True,
    )
    lines: list[str] = []
    got: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            got.put(line.rstrip("\n"))
        got.put(None)

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + 180
    while READY not in lines:
        try:
            line = got.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            line = None
        if line is None:
            proc.kill()
            proc.wait()
            raise AssertionError(f"walletflow dev did not come up; stdout: {lines}; stderr: "
                                 f"{(tmp_path / log_name).read_text()[-3000:]}")
        lines.append(line)
    text = "\n".join(lines)
    key = re.search(r"admin key:\s+(wf_admin_\S+)", text)
    demo = re.search(r"demo:\s+customer (\S+) \(demo-acme\), top-up (\S+) succeeded", text)
    assert key and demo, text
    return DevRun(proc, lines, f"http://127.0.0.1:{ports['api']}", f"127.0.0.1:{ports['temporal']}",
                  f"http://127.0.0.1:{ports['ui']}", key.group(1), demo.group(1), demo.group(2))


def stop_dev(run: DevRun, sig: signal.Signals) -> None:
    tree = descendants(run.proc.pid)
    assert len(tree) >= 2, f"expected the temporal and localstripe children, found {tree}"
    run.proc.send_signal(sig)
    try:
        code = run.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        run.proc.kill()
        raise AssertionError(f"walletflow dev did not stop within 60 s of {sig.name}") from None
    assert code == 0, f"walletflow dev exited {code} after {sig.name}"
    deadline = time.monotonic() + 10
    while (left := {pid for pid in tree if alive(pid)}) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"processes left behind after {sig.name}: {left}"


def metric(text: str, name: str, labels: str) -> float:
    match = re.search(rf"^{re.escape(name)}\{{{re.escape(labels)}\}} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def test_walletflow_dev_runs_the_whole_stack_with_the_demo_and_stops_cleanly(tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("api", "temporal", "ui", "stripe")}
    run = start_dev(tmp_path, ports, "dev-1.log")
    try:
        assert any(line.strip().startswith("API docs:") and line.endswith("/docs") for line in run.lines)
        assert any(f":{ports['ui']}" in line for line in run.lines if "Temporal UI" in line)
        auth = {"Authorization": f"Bearer {run.key}"}
        async with httpx.AsyncClient(base_url=run.api, headers=auth, timeout=30) as http:
            assert (await http.get("/healthz")).json() == {"status": "ok"}
            assert (await http.get("/docs")).status_code == 200

            # The demo through the API: a paid top-up credited by its workflow, then usage debited.
            top_up = (await http.get(f"/v1/top-ups/{run.top_up_id}")).json()
            assert top_up["status"] == "succeeded" and top_up["amount"] == 5000, top_up
            wallet = (await http.get(f"/v1/customers/{run.customer_id}/wallet")).json()
            posted = next(a["posted"] for a in wallet["accounts"] if a["asset"] == "USD")
            transactions = (await http.get(f"/v1/customers/{run.customer_id}/transactions")).json()["data"]
            kinds = sorted(t["kind"] for t in transactions)
            assert kinds.count("topup") == 1 and kinds.count("usage") == 5, kinds
            assert posted == sum(t["amount"] for t in transactions) and 0 < posted < 5000
            versions = (await http.get("/v1/products/demo-chat/versions")).json()["data"]
            assert [v["status"] for v in versions] == ["published"]

            # The demo customer's billing portal: a signed link printed by dev, showing real data.
            [portal_line] = [line for line in run.lines if "demo portal:" in line]
            link = portal_line.split("demo portal:")[1].split()[0]
            assert link.startswith(f"{run.api}/portal/")
            page = await http.get(link, headers={"Authorization": ""})
            assert page.status_code == 200 and "Acme AI (demo)" in page.text, page.text[:500]
            assert f"{posted / 100:.2f}" in page.text  # the wallet's balance, formatted with its scale
            assert f"http://127.0.0.1:{ports['stripe']}/js.stripe.com/v3/" in page.text  # the fake Stripe's Stripe.js

            # /metrics moves with real requests.
            before = (await http.get("/metrics")).text
            assert metric(before, "walletflow_events_ingested_total", 'status="debited"') >= 5
            assert metric(before, "walletflow_topups_total", 'status="succeeded"') >= 1
            assert metric(before, "walletflow_risk_decisions_total", 'decision="approve"') >= 1
            event = {"id": "test-dev-evt", "customer_id": run.customer_id, "event_type": "llm.tokens",
                     "occurred_at": dt.datetime.now(dt.UTC).isoformat(),
                     "data": {"model": "gpt-4o", "input_tokens": 100_000, "output_tokens": 10_000}}
            results = (await http.post("/v1/events", json={"events": [event]})).json()["results"]
            assert results[0]["status"] == "debited" and results[0]["amount"] == 35, results
            after = (await http.get("/metrics")).text
            assert metric(after, "walletflow_events_ingested_total", 'status="debited"') == \
                metric(before, "walletflow_events_ingested_total", 'status="debited"') + 1
            route = 'method="POST",route="/v1/events",status="200"'
            assert metric(after, "walletflow_http_request_duration_seconds_count", route) >= 2

        # The Temporal web UI answers, and the server has the top-up's workflow and the schedules.
        async with httpx.AsyncClient(timeout=30) as http:
            assert (await http.get(run.ui)).status_code == 200
            # What the UI's workflow list shows, through the UI server's own API.
            listed = await http.get(f"{run.ui}/api/v1/namespaces/default/workflows",
                                    params={"query": f"WalletflowCustomerId = '{run.customer_id}'"})
            assert listed.status_code == 200, listed.text
            assert f"topup-{run.top_up_id}" in [e["execution"]["workflowId"] for e in listed.json()["executions"]]
        client = await Client.connect(run.temporal)
        described = await client.get_workflow_handle(f"topup-{run.top_up_id}").describe()
        assert described.status == WorkflowExecutionStatus.COMPLETED
        found = [w.id async for w in client.list_workflows(f"WalletflowCustomerId = '{run.customer_id}'")]
        assert f"topup-{run.top_up_id}" in found
        schedule = await client.get_schedule_handle("walletflow-settlement").describe()
        assert schedule.schedule.state.paused is False
    finally:
        if run.proc.poll() is None:
            stop_dev(run, signal.SIGINT)
    assert (tmp_path / "data" / "temporal.db").exists()

    # Again on the same data: the history is kept, the demo adds nothing, SIGTERM stops it too.
    rerun = start_dev(tmp_path, ports, "dev-2.log")
    try:
        assert rerun.key != run.key  # a fresh admin key every run
        assert (rerun.customer_id, rerun.top_up_id) == (run.customer_id, run.top_up_id)
        async with httpx.AsyncClient(base_url=rerun.api, headers={"Authorization": f"Bearer {rerun.key}"}) as http:
            transactions = (await http.get(f"/v1/customers/{run.customer_id}/transactions")).json()["data"]
            kinds = sorted(t["kind"] for t in transactions)
            assert kinds.count("topup") == 1 and kinds.count("usage") == 6, kinds
        client = await Client.connect(rerun.temporal)
        described = await client.get_workflow_handle(f"topup-{run.top_up_id}").describe()
        assert described.status == WorkflowExecutionStatus.COMPLETED  # persisted across the restart
    finally:
        if rerun.proc.poll() is None:
            stop_dev(rerun, signal.SIGTERM)

    # Killed outright (no chance to clean up): the kernel still stops its children.
    killed = start_dev(tmp_path, ports, "dev-3.log")
    tree = descendants(killed.proc.pid)
    assert len(tree) >= 2
    killed.proc.kill()
    killed.proc.wait(timeout=30)
    deadline = time.monotonic() + 20
    while (left := {pid for pid in tree if alive(pid)}) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in left:  # do not leak them into the rest of the run
        os.kill(pid, signal.SIGKILL)
    assert not left, f"children outlived a killed walletflow dev: {left}"


def test_dev_refuses_a_port_in_use(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("WALLETFLOW_")}
        env["WALLETFLOW_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'walletflow.db'}"
        done = subprocess.run(
            [str(WALLETFLOW), "dev", "--api-port", str(port), "--data-dir", str(tmp_path / "data")],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
        )
    assert done.returncode == 1
    assert f"port {port} (API) is in use" in done.stderr
    assert not (tmp_path / "data" / "temporal.db").exists()  # refused before starting anything


def test_the_temporal_binary_ships_with_the_package() -> None:
    from walletflow.devtools.dev import temporal_binary

    found = Path(temporal_binary())
    assert found.name == "temporal" and os.access(found, os.X_OK)
