"""Temporal activities: adapters from workflows to the walletflow core (ledger, Stripe, risk)."""
