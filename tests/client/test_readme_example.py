"""The README's Python client example runs, as written, against the real API."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
import uuid
from pathlib import Path

from tests.client.conftest import LiveApi

README = Path(__file__).parents[2] / "README.md"


def readme_example() -> str:
    text = README.read_text()
    section = text[text.index("### Python client"):]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)  # type: ignore[union-attr]


async def test_the_readme_client_example_runs(live_api: LiveApi) -> None:
    code = readme_example()
    # Other tests share this database: give the example's ids of its own, nothing else changes.
    suffix = uuid.uuid4().hex[:8]
    for name in ('"acme-42"', '"stripe-pi-123"', '"job-7"', '"job-8"', '"evt-1"', '"llm.tokens"', '"chat"'):
        code = code.replace(name, f'"{name[1:-1]}-{suffix}"')
    out = io.StringIO()

    def run() -> None:
        with contextlib.redirect_stdout(out):
            exec(compile(code, "README.md", "exec"), {"API_URL": live_api.url, "KEY": live_api.admin_key})  # noqa: S102

    await asyncio.to_thread(run)  # the blocking client; the server runs on this loop
    printed = out.getvalue().splitlines()
    assert printed[0] == "debited 60"
    assert "posted=1620 held=0 available=1620" in printed[1]
    assert printed[2].startswith("402 insufficient_funds")
    assert printed[3:] == ["usage -60", "capture -320", "adjustment 2000"]  # newest first
