"""Database plumbing shared by every aggregate: engine, column types, migrations."""
