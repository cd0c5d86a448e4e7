"""Pricing: price definitions and the pure engine that turns usage events into fees."""
