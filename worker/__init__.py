"""The Temporal worker process (task queue ``walletflow``)."""
