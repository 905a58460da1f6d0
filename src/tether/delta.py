"""Delta sync in librsync's formats, byte for byte what Debian's `rdiff` 2.3 reads and writes.

Three steps, as rsync does them: `signature()` of the copy the receiver has, `delta()` of the
new file against that signature, `patch()` of the old copy with the delta. The work is done by
librsync itself through the `python-rsync` binding (it ships librsync in its wheels), which runs
at rdiff's own speed; a rolling checksum in Python would be a hundred times slower.

    with open("old", "rb") as old, open("old.sig", "wb") as sig:
        tether.delta.signature(old, sig)
    with open("old.sig", "rb") as sig, open("new", "rb") as new, open("d", "wb") as out:
        tether.delta.delta(sig, new, out)
    with open("old", "rb") as old, open("d", "rb") as d, open("copy", "wb") as out:
        tether.delta.patch(old, d, out)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, BinaryIO, Literal

import pyrsync

from tether._exceptions import DeltaError

Hash = Literal["blake2", "md4"]
Rollsum = Literal["rabinkarp", "rollsum"]

SIGNATURE_MAGICS: dict[tuple[Hash, Rollsum], int] = {
    ("md4", "rollsum"): 0x72730136,
    ("blake2", "rollsum"): 0x72730137,
    ("md4", "rabinkarp"): 0x72730146,
    ("blake2", "rabinkarp"): 0x72730147,
}
"""The four signature kinds rdiff 2.3 knows, by strong hash and weak rolling sum."""

DELTA_MAGIC = 0x72730236


def _size(stream: BinaryIO) -> int:
    """The bytes left in `stream` when it is a regular file, else 0 (librsync's 'unknown')."""
    try:
        if stream.seekable():
            here = stream.tell()
            end = stream.seek(0, os.SEEK_END)
            stream.seek(here)
            return end - here
    except (OSError, ValueError):
        pass
    return 0


def signature(
    basis: BinaryIO,
    out: BinaryIO,
    *,
    hash: Hash = "blake2",
    rollsum: Rollsum = "rabinkarp",
    block_len: int = 0,
    strong_len: int = 0,
) -> None:
    """Write the signature of `basis` to `out`. The defaults are `rdiff signature`'s: BLAKE2
    strong sums, RabinKarp rolling sums, a block length chosen from the file's size and the
    longest strong sum; the output is the same bytes as `rdiff signature` with the same options
    (`-H`, `-R`, `-b`, `-S`)."""
    try:
        magic = SIGNATURE_MAGICS[(hash, rollsum)]
    except KeyError:
        raise ValueError(
            f"no signature kind {hash}/{rollsum}; hash is blake2 or md4, "
            "rollsum is rabinkarp or rollsum"
        ) from None
    if block_len < 0 or strong_len < 0:
        raise ValueError("block_len and strong_len are 0 (automatic) or positive")
    magic, block_len, strong_len = pyrsync.get_signature_args(
        _size(basis), magic, block_len, strong_len
    )
    _run("signature", pyrsync.signature, basis, out, strong_len, magic, block_len)


def delta(signature: BinaryIO, new: BinaryIO, out: BinaryIO) -> None:
    """Write to `out` the delta that turns the file behind `signature` into `new`."""
    _run("delta", pyrsync.delta, new, signature, out)


def patch(basis: BinaryIO, delta: BinaryIO, out: BinaryIO) -> None:
    """Apply `delta` to `basis` (which must be seekable: a delta copies from anywhere in it)
    and write the result to `out`."""
    if not basis.seekable():
        raise ValueError("the basis of a patch must be seekable (a file, not a pipe)")
    _run("patch", pyrsync.patch, basis, delta, out)


def _run(step: str, function: Callable[..., Any], *args: Any) -> None:
    try:
        function(*args)
    except Exception as exc:
        if type(exc).__name__ != "LibrsyncError":
            raise
        raise DeltaError(f"librsync {step} failed: {_reason(exc)}") from exc


_REASONS = {
    "RS_BAD_MAGIC": "not a librsync stream of the expected kind (bad magic number)",
    "RS_INPUT_ENDED": "the input ended early (truncated signature or delta)",
    "RS_CORRUPT": "the input is corrupt",
    "RS_PARAM_ERROR": "bad parameters",
}


def _reason(exc: Exception) -> str:
    text = str(exc)
    return next((why for code, why in _REASONS.items() if code in text), text)


__all__ = ["DELTA_MAGIC", "SIGNATURE_MAGICS", "delta", "patch", "signature"]
