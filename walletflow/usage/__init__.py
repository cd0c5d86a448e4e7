"""Usage events: priced and debited in real time, with vendor costs for margins."""
