"""Developer tools: the one-command dev stack (``walletflow dev``), its demo data and the fake Stripe it runs."""
