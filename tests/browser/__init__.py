"""Headless-Chromium checks; ``driver`` runs inside a private network namespace."""
