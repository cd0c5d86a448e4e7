"""API keys: created once, shown once, stored hashed, scoped."""
