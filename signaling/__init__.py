"""Podium signaling: tokens, WebSocket protocol, server, Python client and CLI."""

from signaling.wire.webhook_verify import WebhookError, verify_webhook

__all__ = ["WebhookError", "verify_webhook"]
