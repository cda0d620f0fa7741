"""The thin asyncio adapter between aiortc and the sans-I/O media core.

Everything that touches aiortc/aioice internals lives here and is listed in
``selfcheck`` so that an incompatible aiortc fails at start-up with a clear
message instead of silently decoding or dropping audio.
"""
