"""Podium signaling: tokens, WebSocket protocol, server, Python client and CLI."""
