"""Development credentials: what ``podium serve --dev``, the benchmarks and tests share.

Fixed so that dev tokens survive restarts; never use them on a reachable server.
"""

DEV_API_KEY = "devkey"
DEV_API_SECRET = "devsecret-change-me-0123456789abcdef"
