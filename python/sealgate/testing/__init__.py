"""Helpers that play attesters in tests (synthetic, never trusted by default)."""
