"""Execution options our engines understand, whatever the backend."""

from __future__ import annotations

# For connections that only read. SQLite's engines begin them without taking the write lock
# (sqlite/engine.py); PostgreSQL needs nothing of the kind and ignores it.
READ_ONLY_OPTION = "livechat_read_only"
