"""Settings read from the environment (prefix ``WALLETFLOW_``)."""

from __future__ import annotations

from functools import lru_cache

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

    # --- top-ups ----------------------------------------------------------------------------
    #: How long a top-up waits for the customer to pay before the PaymentIntent is cancelled.
    topup_payment_deadline_s: int = 3600
    #: How long a top-up waits in review before it is refunded.
    topup_review_deadline_s: int = 3 * 24 * 3600
    #: How often a waiting top-up asks Stripe itself, in case a webhook never arrives.
    topup_poll_interval_s: int = 60
    #: How long ``POST /v1/top-ups`` waits for the workflow to create the PaymentIntent.
    topup_create_wait_s: float = 20.0

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

    # --- fault injection (tests only; both empty/zero in production) ------------------------
    #: ``before_credit`` or ``after_credit``: the credit activity pauses there for
    #: ``crash_pause_s`` (heartbeating), so a crash test can kill the worker at that exact point.
    crash_pause_at: str = ""
    crash_pause_s: float = 0.0


@lru_cache
def get_settings() -> Settings:
    """Return the settings, read once per process."""
    return Settings()
