"""Podium media core: sans-I/O routing, forwarding and slot policy.

The asyncio/aiortc adapter lives in ``sfu.rtc``; nothing else here does I/O.
"""
