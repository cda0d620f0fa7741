"""What crosses the wire: typed messages, error codes, framing, tokens and webhook signatures."""
