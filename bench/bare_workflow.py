"""The baseline for bench/topups.py: a workflow that runs one empty activity (kept apart: a
workflow module may import nothing that touches I/O, so the sandbox treats it like the real ones)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow


@activity.defn(name="bench.nothing")
async def nothing() -> None:
    return None


@workflow.defn(name="BenchBareWorkflow")
class BareWorkflow:
    @workflow.run
    async def run(self) -> None:
        await workflow.execute_activity(nothing, start_to_close_timeout=timedelta(seconds=30))
