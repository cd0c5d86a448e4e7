"""``python -m worker``: the same worker as ``walletflow worker``."""

from worker.main import main

main()
