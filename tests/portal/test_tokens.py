"""Portal tokens: signed, expiring, bound to one customer; the dev secret file."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import stat
import uuid
from pathlib import Path

import pytest

from walletflow.portal import tokens
from walletflow.portal.tokens import InvalidPortalToken, PortalSecretMissing
from walletflow.settings import Settings

SECRET = b"k" * 40
NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)


def test_a_token_opens_its_customer_until_it_expires() -> None:
    customer = uuid.uuid4()
    token = tokens.issue(SECRET, customer, NOW + dt.timedelta(minutes=10), "https://app.example/billing")
    session = tokens.verify(SECRET, token, NOW)
    assert session.customer_id == customer
    assert session.expires_at == NOW + dt.timedelta(minutes=10)
    assert session.return_url == "https://app.example/billing"
    assert tokens.verify(SECRET, token, NOW + dt.timedelta(minutes=9, seconds=59)).customer_id == customer
    with pytest.raises(InvalidPortalToken):
        tokens.verify(SECRET, token, NOW + dt.timedelta(minutes=10))


def test_two_links_for_one_customer_differ() -> None:
    customer = uuid.uuid4()
    assert tokens.issue(SECRET, customer, NOW) != tokens.issue(SECRET, customer, NOW)


def _payload(token: str) -> dict[str, object]:
    part = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def _encode(body: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()


def test_forged_tokens_are_refused() -> None:
    token = tokens.issue(SECRET, uuid.uuid4(), NOW + dt.timedelta(minutes=10))
    payload, signature = token.split(".")
    other_customer = {**_payload(token), "c": str(uuid.uuid4())}
    later = {**_payload(token), "e": int((NOW + dt.timedelta(days=365)).timestamp())}
    forged = [
        f"{_encode(other_customer)}.{signature}",  # another customer under the old signature
        f"{_encode(later)}.{signature}",  # a later expiry
        tokens.issue(b"another-secret-of-enough-length-000000", uuid.uuid4(), NOW + dt.timedelta(minutes=10)),
        f"{payload}.{signature[:-2]}AA",
        payload, "", "a.b.c", f"{payload}.", "x" * 5000,
    ]
    for candidate in forged:
        with pytest.raises(InvalidPortalToken):
            tokens.verify(SECRET, candidate, NOW)


def test_without_a_configured_secret_one_is_made_once_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "portal-secret"
    settings = Settings(portal_secret="", portal_secret_file=str(path))
    first = tokens.portal_secret(settings)
    assert len(first) >= tokens.MIN_SECRET_CHARS
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert tokens.portal_secret(settings) == first
    # A token made with it verifies after a "restart" (the secret is read back from the file).
    token = tokens.issue(first, uuid.uuid4(), NOW + dt.timedelta(minutes=1))
    tokens.verify(tokens.portal_secret(Settings(portal_secret="", portal_secret_file=str(path))), token, NOW)


def test_a_short_configured_secret_is_refused() -> None:
    with pytest.raises(PortalSecretMissing):
        tokens.portal_secret(Settings(portal_secret="short"))
    assert tokens.portal_secret(Settings(portal_secret="s" * 32)) == b"s" * 32
