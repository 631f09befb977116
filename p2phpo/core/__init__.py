"""Pure, sans-IO protocol and ledger logic.

Nothing in this package reads a clock, opens a socket or file, logs, or draws
entropy on its own: time arrives as ``now``/``wall`` arguments and randomness
as a ``random.Random`` or numpy ``Generator`` passed in.
"""
