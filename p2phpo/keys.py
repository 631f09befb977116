"""Cluster key files: generate, write, load (``--key-file`` or ``P2PHPO_KEY``).

A key is 32 random bytes. A key file holds it as hex text; several non-empty
lines make a keyring whose first line is the primary (the key that seals).
``P2PHPO_KEY`` holds one key as hex or base64. Blank lines and lines starting
with ``#`` are ignored. Every user error is a :class:`KeyFileError` with one
sentence.
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
from collections.abc import Callable, Mapping
from pathlib import Path

from p2phpo.core.wire_crypto import KEY_LEN, Cipher, Keyring

ENV_VAR = "P2PHPO_KEY"
_HEX = frozenset("0123456789abcdefABCDEF")


class KeyFileError(KeyError):
    """A key could not be loaded or written; ``str()`` is one readable sentence."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "bad key"


def generate_key() -> bytes:
    """32 fresh random bytes from the OS."""
    return os.urandom(KEY_LEN)


def parse_key(text: str, *, where: str) -> bytes:
    """Decode one key written as hex (64 digits) or base64 (standard or URL-safe)."""
    s = text.strip()
    raw: bytes | None = None
    if len(s) % 2 == 0 and all(c in _HEX for c in s):
        raw = bytes.fromhex(s)
    if raw is None:
        try:
            raw = base64.b64decode(s.replace("-", "+").replace("_", "/"), validate=True)
        except (binascii.Error, ValueError):
            raise KeyFileError(
                f"{where} is neither hex nor base64; run `p2phpo keygen` to make a key."
            ) from None
    if len(raw) != KEY_LEN:
        raise KeyFileError(f"{where} holds {len(raw)} bytes, but a cluster key is {KEY_LEN} bytes.")
    return raw


def write_key_file(path: str | Path, key: bytes | None = None, *, force: bool = False) -> bytes:
    """Write ``key`` (default: a new one) as hex to ``path`` with mode 0600; return the key."""
    key = generate_key() if key is None else key
    if len(key) != KEY_LEN:
        raise KeyFileError(f"a cluster key is {KEY_LEN} bytes, not {len(key)}.")
    p = Path(path)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(p, flags, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{p} already exists; pass --force to overwrite it.") from None
    except OSError as e:
        raise KeyFileError(f"cannot write {p}: {e.strerror}.") from None
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(key.hex() + "\n")
    return key


def _read_file_keys(path: str | Path, warn: Callable[[str], None] | None) -> list[bytes]:
    p = Path(path)
    try:
        mode = p.stat().st_mode
        text = p.read_text()
    except FileNotFoundError:
        raise KeyFileError(
            f"key file {p} does not exist; create one with `p2phpo keygen --out {p}`."
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise KeyFileError(
            f"cannot read key file {p}: {getattr(e, 'strerror', None) or e}."
        ) from None
    if warn is not None and mode & (stat.S_IRWXG | stat.S_IRWXO):
        warn(f"key file {p} is readable by other users; run `chmod 600 {p}`.")
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if not lines:
        raise KeyFileError(f"key file {p} holds no key.")
    return [parse_key(ln, where=f"line {i + 1} of key file {p}") for i, ln in enumerate(lines)]


def load_keys(
    key_file: str | Path | None,
    env: Mapping[str, str] = os.environ,
    *,
    warn: Callable[[str], None] | None = None,
) -> list[bytes]:
    """Keys from ``key_file`` (first = primary), else from ``P2PHPO_KEY``, else []."""
    if key_file is not None:
        return _read_file_keys(key_file, warn)
    value = env.get(ENV_VAR, "").strip()
    if not value:
        return []
    return [parse_key(value, where=f"${ENV_VAR}")]


def load_key(
    key_file: str | Path | None,
    env: Mapping[str, str] = os.environ,
    *,
    warn: Callable[[str], None] | None = None,
) -> bytes | None:
    """The primary key from ``key_file`` or ``P2PHPO_KEY``, or None when neither is set."""
    keys = load_keys(key_file, env, warn=warn)
    return keys[0] if keys else None


def load_keyring(
    key_file: str | Path | None,
    env: Mapping[str, str] = os.environ,
    *,
    cipher: Cipher = Cipher.AES_GCM,
    warn: Callable[[str], None] | None = None,
) -> Keyring | None:
    """A :class:`Keyring` of every loaded key (first primary), or None without a key."""
    keys = load_keys(key_file, env, warn=warn)
    if not keys:
        return None
    try:
        return Keyring(keys, cipher=cipher)
    except ValueError as e:
        raise KeyFileError(f"the keyring is unusable: {e}.") from None
