"""One way to tell the user something went wrong on stderr.

User text (paths, study fields such as ``[study]``, peer addresses) is never
parsed as rich markup, and a message is never hard-wrapped: on a terminal the
terminal wraps it, in a log or a pipe it stays one line.
"""

from __future__ import annotations

import errno
import socket
import sys

from rich.console import Console
from rich.text import Text


def _console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str) -> None:
    """Print ``error: <message>`` to stderr (the caller exits non-zero)."""
    text = Text("error:", style="bold red")
    text.append(" ")
    text.append(str(message))
    _console().print(text)
    sys.stderr.flush()


def note(message: str) -> None:
    """Print a plain line to stderr."""
    _console().print(Text(str(message)))


def bind_error(bind: str, exc: OSError) -> str:
    """One sentence for a failed bind: says so plainly when the port is taken.

    uvloop raises a bare ``OSError`` without an errno, so the cause is found
    again by binding a throwaway UDP and TCP socket to the same address.
    """
    host, _, port = bind.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    code = exc.errno if exc.errno is not None else _probe(host, port)
    if code == errno.EADDRINUSE:
        return (f"port {port} is already in use on {host} (another p2phpo node?); "
                "pick a free one with --bind HOST:PORT")
    if code == errno.EADDRNOTAVAIL:
        return f"cannot bind {bind}: that address is not one of this machine's"
    if code == errno.EACCES:
        return f"cannot bind {bind}: permission denied (ports below 1024 need root)"
    return f"cannot bind {bind}: {exc.strerror or exc}"


def _probe(host: str, port: str) -> int | None:
    try:
        infos = socket.getaddrinfo(host, int(port), proto=socket.IPPROTO_UDP)
    except (OSError, ValueError):
        return None
    family, addr = infos[0][0], infos[0][4]
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(family, kind) as s:
            try:
                s.bind(addr)
            except OSError as e:
                return e.errno
    return None
