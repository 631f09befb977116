"""asyncio adapters around the pure cores (sockets, timers, subprocesses)."""
