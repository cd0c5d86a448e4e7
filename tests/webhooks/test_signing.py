"""The public ``verify`` a receiver runs: a good signature passes; a tampered body, another
secret, an old or future timestamp or a malformed header are refused with a typed error."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest

from walletflow.webhooks.signing import SignatureVerificationError, new_secret, sign, verify

BODY = json.dumps({"id": "e1", "type": "balance.low", "created_at": "2026-11-27T10:00:00Z",
                   "customer_id": None, "data": {"available": 90}}).encode()


def test_a_signature_made_by_hand_verifies_and_returns_the_event() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_") and len(secret) > 40
    t = int(time.time())
    # What any receiver can compute without walletflow: HMAC-SHA256(secret, "t.body").
    digest = hmac.new(secret.encode(), f"{t}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(BODY, secret, t) == f"t={t},v1={digest}"
    assert verify(BODY, f"t={t},v1={digest}", secret) == json.loads(BODY)
    assert verify(BODY.decode(), sign(BODY, secret), secret)["type"] == "balance.low"


def test_a_tampered_body_is_refused() -> None:
    secret = new_secret()
    header = sign(BODY, secret)
    tampered = BODY.replace(b"90", b"9000")
    with pytest.raises(SignatureVerificationError) as refused:
        verify(tampered, header, secret)
    assert refused.value.reason == "mismatch"


def test_another_secret_is_refused() -> None:
    with pytest.raises(SignatureVerificationError) as refused:
        verify(BODY, sign(BODY, new_secret()), new_secret())
    assert refused.value.reason == "mismatch"


@pytest.mark.parametrize("offset_s", [-301, 301, -3600])
def test_a_timestamp_outside_the_tolerance_is_refused(offset_s: int) -> None:
    secret = new_secret()
    t = int(time.time()) + offset_s
    with pytest.raises(SignatureVerificationError) as refused:
        verify(BODY, sign(BODY, secret, t), secret)
    assert refused.value.reason == "expired"
    # The same signature inside a wider window, or at the receiver's own clock, is fine.
    assert verify(BODY, sign(BODY, secret, t), secret, tolerance_s=abs(offset_s) + 5)
    assert verify(BODY, sign(BODY, secret, t), secret, now=t + 10)


def test_a_replayed_signature_cannot_be_moved_to_a_new_timestamp() -> None:
    secret = new_secret()
    old = int(time.time()) - 3600
    v1 = sign(BODY, secret, old).split("v1=")[1]
    with pytest.raises(SignatureVerificationError) as refused:
        verify(BODY, f"t={int(time.time())},v1={v1}", secret)
    assert refused.value.reason == "mismatch"


@pytest.mark.parametrize("header", [None, "", "v1=abc", "t=123", "t=abc,v1=00", "garbage"])
def test_a_malformed_header_is_refused(header: str | None) -> None:
    with pytest.raises(SignatureVerificationError) as refused:
        verify(BODY, header, new_secret())
    assert refused.value.reason == "malformed"


def test_any_matching_v1_is_accepted() -> None:
    secret = new_secret()
    t = int(time.time())
    good = sign(BODY, secret, t).split("v1=")[1]
    assert verify(BODY, f"t={t},v1={'0' * 64},v1={good}", secret)
