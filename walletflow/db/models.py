"""Imports every table module so ``Base.metadata`` is complete (Alembic, tests)."""

import walletflow.auth.models  # noqa: F401
import walletflow.catalog.models  # noqa: F401
import walletflow.ledger.models  # noqa: F401
import walletflow.payments.models  # noqa: F401
import walletflow.recharge.models  # noqa: F401
import walletflow.usage.models  # noqa: F401
import walletflow.webhooks.models  # noqa: F401
import walletflow.settlement.models  # noqa: F401
import walletflow.migration.models  # noqa: F401
