"""Reports over usage and the ledger."""
