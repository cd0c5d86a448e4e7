"""Usage settlement (holds, reconciliation, usage scoring, postpaid invoices) and grant expiry.

The core: plain async functions over the database and the ledger, nothing about Temporal.
``activities/settlement.py`` adapts them to activities; ``workflows/settlement.py`` and
``workflows/grant_expiry.py`` orchestrate them; ``walletflow/schedules.py`` runs them on
Temporal Schedules.
"""
