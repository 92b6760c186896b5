"""The pure core: no I/O, no asyncio, no clock reads (time is passed in)."""
