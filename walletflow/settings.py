"""Settings read from the environment (prefix ``WALLETFLOW_``)."""

from __future__ import annotations

from functools import lru_cache

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


@lru_cache
def get_settings() -> Settings:
    """Return the settings, read once per process."""
    return Settings()
