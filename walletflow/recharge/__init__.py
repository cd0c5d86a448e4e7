"""Auto-recharge: per-wallet policies, the threshold-trigger outbox, and the charge rules."""
