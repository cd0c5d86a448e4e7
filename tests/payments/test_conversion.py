"""Currency-to-asset conversion for top-ups: rounding never creates money."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from walletflow.payments.conversion import credit_for, share_of_credit


def test_credit_rounds_down_to_a_whole_minor_unit() -> None:
    # $10.00 at $0.03 per credit (credits have no decimals) buys 333 credits, not 333.33.
    assert credit_for(1000, 2, 0, Decimal("0.03")) == 333
    # $20.00 at $0.002 per token with scale 3: 10,000 tokens = 10,000,000 minor units.
    assert credit_for(2000, 2, 3, Decimal("0.002")) == 10_000_000
    # One cent at a dollar per credit buys nothing.
    assert credit_for(1, 2, 0, Decimal("1")) == 0


@given(
    paid=st.integers(min_value=1, max_value=10**9),
    credited=st.integers(min_value=0, max_value=10**9),
    cuts=st.lists(st.integers(min_value=1, max_value=10**9), max_size=6),
)
def test_refunds_take_back_exactly_what_was_credited_in_total(paid: int, credited: int, cuts: list[int]) -> None:
    refunded, taken = 0, 0
    for cut in cuts:
        step = min(cut, paid - refunded)
        if step == 0:
            break
        share = share_of_credit(refunded, step, paid, credited)
        assert 0 <= share <= credited - taken
        # Never less than the exact proportional share of this step (the platform never loses).
        assert share * paid >= step * credited - paid
        refunded, taken = refunded + step, taken + share
    if refunded < paid:
        taken += share_of_credit(refunded, paid - refunded, paid, credited)
    assert taken == credited
