"""Settings read from the environment (prefix ``WALLETFLOW_``)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SQLITE_URL = "sqlite+aiosqlite:///./walletflow.db"


class Settings(BaseSettings):
    """Process-wide configuration.

    ``database_url`` selects the storage: ``postgresql+asyncpg://...`` in production and tests,
    ``sqlite+aiosqlite:///...`` (the default) for the zero-setup dev stack.
    """

    model_config = SettingsConfigDict(env_prefix="WALLETFLOW_", env_file=".env", extra="ignore")

    database_url: str = DEFAULT_SQLITE_URL
    #: Connections kept per process; PostgreSQL only (SQLite serialises writers anyway).
    database_pool_size: int = 20
    #: How long a SQLite writer waits for the file lock before giving up, in seconds.
    sqlite_busy_timeout_s: float = 30.0

    # --- Temporal ---------------------------------------------------------------------------
    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    #: Every workflow and activity runs on this queue.
    task_queue: str = "walletflow"
    #: How long a workflow task waits for the worker that has the workflow cached before any
    #: worker takes it (after a worker crash, its workflows resume elsewhere after this).
    worker_sticky_timeout_s: float = 10.0

    # --- Stripe -----------------------------------------------------------------------------
    #: Secret key. Never logged; the default is a placeholder that only a fake Stripe accepts.
    stripe_api_key: str = "sk_test_walletflow"
    #: None talks to real Stripe; tests point this at localstripe (``http://127.0.0.1:PORT``).
    stripe_api_base: str | None = None
    #: Signing secret of the webhook endpoint. Empty disables ``POST /v1/stripe/webhooks``
    #: (answered 503) instead of accepting unsigned events.
    stripe_webhook_secret: str = ""
    #: One Stripe call longer than this is abandoned and retried (creates are looked up first).
    stripe_timeout_s: float = 30.0

    # --- top-ups ----------------------------------------------------------------------------
    #: How long a top-up waits for the customer to pay before the PaymentIntent is cancelled.
    topup_payment_deadline_s: int = 3600
    #: How long a top-up waits in review before it is refunded.
    topup_review_deadline_s: int = 3 * 24 * 3600
    #: How often a waiting top-up asks Stripe itself, in case a webhook never arrives.
    topup_poll_interval_s: int = 60
    #: How long ``POST /v1/top-ups`` waits for the workflow to create the PaymentIntent.
    topup_create_wait_s: float = 20.0
    #: How long one step of a top-up (a Stripe call, a database write) may take before Temporal
    #: retries it (on another worker if this one died): the time a crash costs a top-up.
    topup_call_timeout_s: int = 30
    #: PaymentsSweepWorkflow: a top-up still ``initiated`` (or a refund still ``pending``) this long
    #: after it was recorded has no running workflow (the API lost Temporal in between): start it.
    payments_sweep_grace_s: int = 120
    payments_sweep_batch: int = 200

    # --- risk rules (amounts in minor units of the top-up currency) -------------------------
    risk_review_amount: int = 100_000
    risk_reject_amount: int = 1_000_000
    #: A top-up this many times larger than the customer's largest paid one is suspicious.
    risk_history_multiple: int = 10
    #: Top-ups started in the last hour before velocity counts against the customer.
    risk_max_topups_per_hour: int = 5
    #: Failed top-ups in the last 24 hours before they count against the customer.
    risk_max_failed_24h: int = 3
    #: Scores (0-100) at or above which a top-up goes to review, or is rejected outright.
    risk_review_score: int = 40
    risk_reject_score: int = 100

    # --- outbound webhooks (to the platform's endpoints) -------------------------------------
    #: How long one POST to an endpoint may take before it counts as a failed attempt.
    webhook_timeout_s: float = 10.0
    #: Attempts per delivery (the first included) before it is marked ``failed``; retried with
    #: exponential backoff: ``initial * coefficient^(n-1)``, capped at ``max_interval``. The
    #: defaults spread 12 attempts over about 7 hours.
    webhook_max_attempts: int = 12
    webhook_initial_interval_s: float = 10.0
    webhook_backoff_coefficient: float = 2.0
    webhook_max_interval_s: float = 3600.0
    #: Outbox events one dispatch run fans out, and delivery workflows it starts (bounded: one
    #: worker completes some 40-50 small workflows a second; the rest wait for the next run).
    webhook_dispatch_batch_size: int = 100
    webhook_start_batch_size: int = 200

    # --- scheduled runs (Temporal Schedules, `walletflow schedules apply`) -------------------
    #: Schedule ids are ``{schedule_id_prefix}-settlement`` etc.; one prefix per deployment.
    schedule_id_prefix: str = "walletflow"
    schedule_recharge_sweep_interval_s: int = 300
    schedule_settlement_interval_s: int = 3600
    schedule_grant_expiry_interval_s: int = 300
    schedule_webhook_dispatch_interval_s: int = 60
    schedule_payments_sweep_interval_s: int = 300

    # --- settlement -------------------------------------------------------------------------
    #: ``day`` or ``hour``: the length of a settlement period (UTC).
    settlement_period: str = "day"
    #: A period is settled this long after it ends, so writes in flight have landed.
    settlement_grace_s: int = 300
    #: A scheduled run also settles up to this many missed periods since the last report.
    settlement_max_catch_up: int = 24
    #: Examples kept per leak kind in a report (the counts and amounts are always complete).
    settlement_report_max_details: int = 100
    #: Usage scoring: a customer is frozen for review when a period's spend in an asset is at
    #: least ``usage_spike_min_amount`` (minor units) and more than ``usage_spike_factor`` times
    #: the average spend per period over the ``usage_spike_baseline_periods`` before it.
    usage_spike_factor: int = 10
    usage_spike_min_amount: int = 10_000
    usage_spike_baseline_periods: int = 7
    #: Postpaid invoices: custom assets are converted to this currency with their rate.
    invoice_currency: str = "USD"
    #: ``send_invoice`` (Stripe emails it, due after ``invoice_days_until_due``) or
    #: ``charge_automatically`` (Stripe charges the customer's default payment method).
    invoice_collection_method: str = "send_invoice"
    invoice_days_until_due: int = 30
    #: Postpaid customers invoiced per activity call (bounded work per call).
    invoice_batch_size: int = 50

    # --- grant expiry -----------------------------------------------------------------------
    #: Due grants expired per ledger call; a run makes at most ``grant_expiry_max_batches``.
    grant_expiry_batch_size: int = 500
    grant_expiry_max_batches: int = 20

    # --- auto-recharge ---------------------------------------------------------------------
    #: After a charge that took money, no other charge on that wallet for this long.
    recharge_cooldown_s: float = 600.0
    #: After a declined charge, wait this long before the next try, doubling per decline in a row.
    recharge_backoff_initial_s: float = 300.0
    recharge_backoff_max_s: float = 6 * 3600.0
    #: Declines in a row after which the policy is disabled and the platform told.
    recharge_max_consecutive_failures: int = 3
    #: How often the relay looks for trigger rows nobody has relayed yet (an indexed read of a
    #: small outbox; the balances themselves are never polled).
    recharge_relay_poll_s: float = 1.0
    #: Trigger rows relayed per pass.
    recharge_relay_batch: int = 200
    #: How long one relay activity runs before the relay workflow starts the next one.
    recharge_relay_run_s: float = 60.0
    #: How long a charge may stay pending at Stripe before it is cancelled, and how often it is asked.
    recharge_payment_deadline_s: int = 600
    recharge_poll_interval_s: int = 10
    #: Charges after which a recharge workflow continues as new (bounded history).
    recharge_charges_per_run: int = 50

    # --- MCP server (`walletflow mcp`) -------------------------------------------------------
    #: The walletflow API the MCP tools call.
    mcp_api_url: str = "http://127.0.0.1:8000"
    #: The API key the tools act with over stdio (over HTTP each MCP client sends its own).
    mcp_api_key: str = ""
    #: Port of ``walletflow mcp --transport http``.
    mcp_port: int = 8765

    # --- billing portal (`POST /v1/portal/sessions`) ------------------------------------------
    #: HMAC-SHA256 key that signs portal links (at least 32 characters). Set it in production,
    #: the same on every API replica. Empty: a random one is generated on first use and kept in
    #: ``portal_secret_file`` (dev convenience: one machine, survives restarts).
    portal_secret: str = ""
    portal_secret_file: str = "./.walletflow-portal-secret"
    #: How long a portal link works, in seconds (default 10 minutes, at most one day).
    portal_session_ttl_s: int = Field(default=600, ge=30, le=86_400)
    #: Where portal links point: the API's public base URL as the customer's browser reaches it.
    portal_base_url: str = "http://127.0.0.1:8000"
    #: Stripe.js for the portal's top-up form: Stripe's own in production; localstripe's
    #: ``http://127.0.0.1:PORT/js.stripe.com/v3/`` in tests and dev.
    stripe_js_url: str = "https://js.stripe.com/v3/"
    #: Publishable key the portal's Stripe.js uses (never the secret key).
    stripe_publishable_key: str = "pk_test_walletflow"

    # --- risk model (walletflow/risk; README "Risk scoring") ---------------------------------
    #: Directory of a trained artifact (``walletflow risk train``). Unset: the built-in model,
    #: trained at worker start from simulated traffic (deterministic), unless
    #: ``risk_builtin_model`` is off, in which case the rules score alone (logged loudly).
    risk_model_path: str | None = None
    #: HMAC key the artifact's manifest was signed with; checked before anything is unpickled.
    risk_model_signing_key: SecretStr | None = None
    #: Without a signing key: the artifact's model SHA-256, pinned here instead.
    risk_model_sha256: str | None = None
    risk_builtin_model: bool = True
    #: Model scores (100 x probability of fraud) at or above which a payment is reviewed / rejected.
    risk_model_review_score: int = 50
    risk_model_reject_score: int = 98
    #: Card fingerprints that may pay for many customers (a company card, Stripe test cards):
    #: they count as not shared. JSON list in the environment.
    risk_shared_card_allowlist: list[str] = []

    # --- usage risk (scored by settlement; walletflow/risk/usage.py) ------------------------
    #: Period spend at or above this multiple of the customer's trailing baseline: review;
    #: at or above the reject multiple: reject (the wallet is frozen either way, pending review).
    risk_usage_review_ratio: float = 5.0
    risk_usage_reject_ratio: float = 20.0
    #: Spend in a period below this (minor units) is never a spike, whatever the ratio.
    risk_usage_min_spend: int = 1_000

    # --- observability ----------------------------------------------------------------------
    #: ``json`` (one object per line, for log shippers) or ``text``; secrets are redacted in both.
    log_format: str = "json"
    log_level: str = "INFO"
    #: Serve Prometheus metrics on ``GET /metrics`` of the API (unauthenticated, like most
    #: exporters: keep it off the public listener, or turn it off here).
    metrics_enabled: bool = True
    #: The worker serves its metrics on this port (0: not served). Off by default so several
    #: workers on one host never fight over a port; docker-compose.yml turns it on.
    worker_metrics_port: int = 0

    # --- Stripe-to-wallet migration (`walletflow migrate stripe`) ------------------------------
    #: Stripe requests per second the migration allows itself (token bucket, client side); the
    #: sandbox allows 25. A 429 is retried with exponential backoff anyway.
    migration_stripe_rps: float = 25.0
    #: First wait after a 429, doubled on each further 429 of the same call (with jitter, max 30 s).
    migration_rate_limit_backoff_s: float = 0.5
    #: Stripe customers per page: one activity (heartbeating) per page.
    migration_page_size: int = 100
    #: Pages per workflow run before continue-as-new keeps the history bounded.
    migration_pages_per_run: int = 20
    #: The auto-recharge policy made from a customer's default payment method (minor units of the
    #: customer's Stripe currency). Disabled unless the run asks for enabled policies.
    migration_recharge_threshold: int = 500
    migration_recharge_target: int = 2000
    migration_recharge_daily_cap: int = 20_000
    migration_recharge_monthly_cap: int = 100_000

    # --- fault injection (tests only; both empty/zero in production) ------------------------
    #: A point named in ``activities/crash_points.py``: the activity pauses there for
    #: ``crash_pause_s`` (heartbeating), so a crash test can kill the worker at that exact point.
    crash_pause_at: str = ""
    crash_pause_s: float = 0.0
    #: Migration: pause (heartbeating) once this many customers of the run are done (mid-page),
    #: so a crash test can kill the worker there. 0: never.
    crash_migration_after: int = 0


@lru_cache
def get_settings() -> Settings:
    """Return the settings, read once per process."""
    return Settings()
