"""Outbound notifications to the platform: the event outbox and signed webhook delivery."""
