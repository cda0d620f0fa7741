"""Podium media core: sans-I/O routing, forwarding and slot policy; asyncio/aiortc adapter in sfu.rtc."""
