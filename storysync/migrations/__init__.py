"""Alembic migrations of the storysync database schema (run by ``storysync.db``)."""
