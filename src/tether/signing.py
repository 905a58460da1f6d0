"""Ed25519 signatures over package versions, shared by the SDK (which verifies) and the cloud
and CLI (which sign).

What is signed is a version's identity and content: reference, version, size and SHA-256, one
per line under a fixed header, so a signature can never be moved to other bytes or another
version. Public keys and signatures travel as base64 of their raw bytes; a private key is kept
as PKCS#8 PEM (what `openssl pkey` reads) in a file only its owner can read.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "SigningKey",
    "package_message",
    "public_key_of",
    "verify_package",
]

_HEADER = b"tether-package-v1\n"


def package_message(reference: str, version: str, size: int, sha256: str) -> bytes:
    """The bytes a package version's signature covers."""
    return _HEADER + f"{reference}\n{version}\n{size}\n{sha256.lower()}\n".encode()


def _public(public_key: str) -> Ed25519PublicKey:
    try:
        raw = base64.b64decode(public_key, validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError):
        raise ValueError("not an ed25519 public key (base64 of 32 bytes)") from None


def public_key_of(public_key: str) -> str:
    """`public_key` in canonical form; ValueError if it is not an ed25519 public key."""
    return base64.b64encode(_public(public_key).public_bytes_raw()).decode()


def verify_package(
    public_key: str, signature: str, reference: str, version: str, size: int, sha256: str
) -> bool:
    """Whether `signature` is `public_key`'s signature of this package version."""
    try:
        raw = base64.b64decode(signature, validate=True)
        _public(public_key).verify(raw, package_message(reference, version, size, sha256))
    except (binascii.Error, ValueError, InvalidSignature):
        return False
    return True


class SigningKey:
    """An ed25519 private key that signs package versions."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, pem: bytes) -> SigningKey:
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("not an ed25519 private key")
        return cls(key)

    @classmethod
    def from_raw(cls, private_key: str) -> SigningKey:
        """From base64 of the 32 raw bytes (how a server-held key is stored)."""
        return cls(Ed25519PrivateKey.from_private_bytes(base64.b64decode(private_key)))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SigningKey:
        return cls.from_pem(Path(path).read_bytes())

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the key as PEM to a new file readable only by its owner."""
        target = Path(path)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(self.pem())
        return target

    def pem(self) -> bytes:
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def raw(self) -> str:
        return base64.b64encode(
            self._key.private_bytes(
                serialization.Encoding.Raw,
                serialization.PrivateFormat.Raw,
                serialization.NoEncryption(),
            )
        ).decode()

    @property
    def public_key(self) -> str:
        return base64.b64encode(self._key.public_key().public_bytes_raw()).decode()

    def sign_package(self, reference: str, version: str, size: int, sha256: str) -> str:
        """The base64 signature of a package version."""
        message = package_message(reference, version, size, sha256)
        return base64.b64encode(self._key.sign(message)).decode()
