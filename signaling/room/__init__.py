"""Pure room logic: roles, stage, chat, attendees and the room orchestrator.

No asyncio, aiohttp, aiortc or ``sfu.rtc`` here; time comes in as an argument or from
the injected clock, media through the ``MediaFacade`` protocol.
"""
