"""Shared test settings. Area-specific helpers live beside their tests, not here."""
