"""Secrets the server must keep readable (the token-signing key, server-held package signing
keys) are stored sealed: encrypted and authenticated (Fernet: AES-128-CBC with HMAC-SHA256)
under a master key that never enters the database.

The master key comes from `TETHER_MASTER_KEY`, or from the file `master.key` in the data folder,
created on first start readable by its owner only. A copy of the database alone (a backup, a
dump, a read-only SQL account) then yields no key that can forge a token or sign a package.
Whoever can read the key file or the process environment still can: the trade-off is written in
`docs/configuration.md`.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

PREFIX = "sealed:v1:"
KEY_FILE = "master.key"


class SealError(RuntimeError):
    """A sealed value that this master key cannot open: the key changed or the value was
    tampered with."""


class Sealer:
    """Seals and opens the server's stored secrets under one master key."""

    def __init__(self, master_key: str) -> None:
        material = hashlib.sha256(master_key.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(material))

    def seal(self, secret: str) -> str:
        return PREFIX + self._fernet.encrypt(secret.encode()).decode()

    def open(self, stored: str) -> str:
        """The secret inside `stored`; a value stored before sealing existed comes back as is
        (`is_sealed` tells the caller to seal it again)."""
        if not is_sealed(stored):
            return stored
        try:
            return self._fernet.decrypt(stored[len(PREFIX) :].encode()).decode()
        except InvalidToken:
            raise SealError(
                "A stored secret cannot be opened with this master key: set TETHER_MASTER_KEY "
                "(or restore master.key in the data folder) to the key it was sealed with."
            ) from None


def is_sealed(stored: str) -> bool:
    return stored.startswith(PREFIX)


def master_key(configured: str | None, data: Path) -> str:
    """The configured master key, or the data folder's key file (made, owner-only, when
    missing)."""
    if configured:
        return configured
    path = data / KEY_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    data.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key
