"""Payments: top-ups paid through Stripe, their records and the Stripe gateway. No Temporal here."""
