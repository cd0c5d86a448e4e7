"""Money paid in one currency, credited as another asset (``"asset": "CREDITS"`` on a top-up).

The rate is the catalog's fiat price of one whole unit of the asset, in force when the top-up is
recorded; it is fixed on the top-up then, so the customer is credited what they were quoted.
Rounding is always in the platform's favour by at most one minor unit and never creates money:
the credit rounds down, and a refund or dispute takes back its share of the credit rounded up,
computed on the running total so that refunding everything takes back exactly what was credited.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal


def credit_for(amount: int, currency_scale: int, asset_scale: int, rate: Decimal) -> int:
    """Asset minor units bought by ``amount`` currency minor units at ``rate`` (rounded down)."""
    whole_currency = Decimal(amount).scaleb(-currency_scale)
    units = (whole_currency / rate).scaleb(asset_scale)
    return int(units.to_integral_value(rounding=ROUND_FLOOR))


def share_of_credit(refunded_before: int, refunding: int, paid: int, credited: int) -> int:
    """The asset amount to take back for refunding ``refunding`` more of ``paid`` (currency minor
    units), ``refunded_before`` having been refunded already: the difference of the running
    shares, each rounded up, so all refunds together take back exactly ``credited``."""

    def running(total: int) -> int:
        return int((Decimal(total) * credited / paid).to_integral_value(rounding=ROUND_CEILING))

    return running(refunded_before + refunding) - running(refunded_before)
