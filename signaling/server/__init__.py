"""The process edge, the only signaling layer doing I/O: WebSocket, REST, webhooks, metrics, CLI."""
