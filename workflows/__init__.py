"""Temporal workflows: thin, deterministic orchestration of the money movements.

Workflows import activity modules only inside ``workflow.unsafe.imports_passed_through()`` and
never numpy, scikit-learn, SQLAlchemy or stripe at top level.
"""
