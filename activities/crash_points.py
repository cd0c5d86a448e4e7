"""Fault injection for the crash tests: an activity pauses at a named point, heartbeating, so a
test can kill the worker process (SIGKILL) exactly there. Off unless ``crash_pause_at`` names
the point (never set in production).

Points: ``after_payment_intent``, ``before_credit``, ``after_credit``, ``after_stripe_refund``
(top-ups; the last one also for auto-recharge refunds), ``recharge_after_payment_intent``,
``recharge_before_credit``, ``recharge_after_credit``.
"""

from __future__ import annotations

import asyncio
import logging

from temporalio import activity

from walletflow.settings import Settings

log = logging.getLogger(__name__)


async def crash_pause(settings: Settings, point: str) -> None:
    if settings.crash_pause_at != point or settings.crash_pause_s <= 0:
        return
    log.warning("crash test: pausing %s for %.1f s", point, settings.crash_pause_s)
    loop = asyncio.get_running_loop()
    until = loop.time() + settings.crash_pause_s
    while loop.time() < until:
        activity.heartbeat(point)
        await asyncio.sleep(0.2)
