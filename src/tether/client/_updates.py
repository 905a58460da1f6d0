"""What both update twins share: the installed-package record and the checks a package passes
before and after its bytes come down."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tether._exceptions import ChecksumError, DowngradeError
from tether._versions import parse_version
from tether.signing import verify_package

STATES = ("downloading", "installed", "failed")


@dataclass(frozen=True)
class Package:
    """A package installed on a device: its reference and version."""

    reference: str
    version: str


def destination_for(destination: str | os.PathLike[str] | None, filename: str, sha256: str) -> Path:
    """Where a download goes: `destination`, or by default a prefix unique to the content plus
    the original file name (in the working directory, or inside `destination` if it is a
    folder, or ends with a slash: then it is made). The prefix comes from the SHA-256, so a
    download cut off and called again, even by a new process, finds its partial file."""
    name = f"{sha256[:12]}_{Path(filename).name}"
    if destination is None:
        return Path(name)
    target = Path(destination)
    if str(destination).endswith(("/", os.sep)):
        target.mkdir(parents=True, exist_ok=True)
    return target / name if target.is_dir() else target


def check_offer(
    data: dict[str, Any],
    installed: str | None,
    public_key: str | None,
    allow_downgrade: bool,
) -> None:
    """Refuse a package before downloading it: a downgrade not allowed, or (when the client
    trusts a signing key) a missing or foreign signature."""
    if installed is not None and not allow_downgrade:
        try:
            older = parse_version(data["version"]) < parse_version(installed)
        except ValueError:
            older = False
        if older:
            raise DowngradeError(
                f"{data['reference']} {data['version']} is older than the installed {installed}; "
                "pass allow_downgrade=True to install it"
            )
    if public_key is None:
        return
    signature = data.get("signature")
    message = (data["reference"], data["version"], int(data["size"]), data["sha256"])
    if not signature or not verify_package(public_key, signature, *message):
        raise ChecksumError(
            f"{data['reference']} {data['version']}: the signature does not verify with the "
            "trusted signing key"
        )
