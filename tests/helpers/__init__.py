"""Reusable test helpers (import as ``from helpers.procs import ...``; tests/ is on sys.path)."""
