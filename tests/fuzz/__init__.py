"""Hostile input (property and fuzz tests, bounded in time; their corpus is tests/data/corpus)."""
