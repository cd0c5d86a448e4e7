"""Stripe-to-wallet migration: customers, credit balances and grants, metered prices, cut-over."""
