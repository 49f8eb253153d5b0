"""Fixtures shared by the whole suite. Tests run against real PostgreSQL and Redis."""
