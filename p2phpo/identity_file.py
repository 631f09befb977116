"""The node's signing key in its state dir: ``identity.key``, 32 secret bytes, mode 0600.

The node id derives from the key's public half (``core/identity.py``), so the
file *is* the node's identity: copying it copies the node, losing it means a
new node id. Created once with the OS's randomness, written atomically and
fsync'ed before the node writes anything that its id names.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from p2phpo.core.identity import SEED_LEN, Identity

IDENTITY_NAME = "identity.key"


class IdentityFileError(Exception):
    """The identity file is missing, unreadable or damaged; the message is one sentence."""


def identity_path(root: Path) -> Path:
    return root / IDENTITY_NAME


def load_identity(root: Path) -> Identity:
    """The identity kept in state dir ``root``."""
    path = identity_path(root)
    try:
        seed = path.read_bytes()
    except FileNotFoundError:
        raise IdentityFileError(
            f"state dir {root} has no {IDENTITY_NAME}: it was made by a p2phpo without signed "
            "ledgers (or the key was deleted); use a new --state-dir"
        ) from None
    except OSError as exc:
        raise IdentityFileError(f"cannot read {path}: {exc.strerror}") from None
    if len(seed) != SEED_LEN:
        raise IdentityFileError(f"{path} is damaged ({len(seed)} bytes, not {SEED_LEN}); use a new --state-dir")
    return Identity(seed)


def create_identity(root: Path, urandom: Callable[[int], bytes] = os.urandom) -> Identity:
    """Make a new identity in ``root`` (owner-only file); refuse to overwrite one."""
    path = identity_path(root)
    seed = urandom(SEED_LEN)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, seed)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # fails if an identity appeared meanwhile: never replace one
    except FileExistsError:
        raise IdentityFileError(f"{path} already exists; refusing to replace a node identity") from None
    finally:
        os.unlink(tmp)
    dir_fd = os.open(root, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return Identity(seed)
