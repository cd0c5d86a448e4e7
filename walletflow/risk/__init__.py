"""Risk scoring of money coming into a wallet (rules now; a trained model can sit behind the same interface)."""
