"""`AsyncUpdates`: software updates for a device (check, download, report) and for the people
who ship them (publish, deploy).

This file is the source of both twins: `scripts/unasync.py` writes `_sync_updates.py`
(`Updates`) from it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from tether._versions import canonical_version
from tether.client._async_files import Progress, _async_chunks, fetch_verified
from tether.client._files import Source, measure, opened_source, source_name
from tether.client._updates import STATES, Package, check_offer, destination_for
from tether.client._workers import _async_offload
from tether.signing import SigningKey

if TYPE_CHECKING:
    from tether.client._async_client import AsyncClient


class AsyncDownloadablePackage:
    """A package version a check offered: what it is, and how to fetch it verified."""

    def __init__(self, updates: AsyncUpdates, data: dict[str, Any], installed: str | None) -> None:
        self._updates = updates
        self.data = data
        self.installed_version = installed

    reference = property(lambda self: str(self.data["reference"]))
    version = property(lambda self: str(self.data["version"]))
    filename = property(lambda self: str(self.data["filename"]))
    size = property(lambda self: int(self.data["size"]))
    sha256 = property(lambda self: str(self.data["sha256"]))
    url = property(lambda self: self._updates._client._session.resolve(str(self.data["url"])))
    """The full URL of the package's bytes (needs the client's credentials)."""
    signature = property(lambda self: self.data.get("signature"))
    metadata = property(lambda self: dict(self.data.get("metadata") or {}))

    async def download(
        self,
        destination: str | os.PathLike[str] | None = None,
        *,
        progress: Progress | None = None,
        allow_downgrade: bool = False,
    ) -> Path:
        """Save the package, verified (size, SHA-256, and signature when the client trusts a
        signing key), and return its path. The default name is a content prefix plus the
        original file name. A broken transfer raises `DownloadError` and keeps the partial file
        for the next call to resume; a mismatch raises `ChecksumError` and keeps nothing."""
        check_offer(self.data, self.installed_version, self._updates.public_key, allow_downgrade)
        target = destination_for(destination, self.filename, self.sha256)
        return await fetch_verified(
            self._updates._client, self.url, target, self.size, self.sha256, progress
        )

    async def report(self, state: str, reason: str | None = None) -> dict[str, Any]:
        """Tell the server how this package is doing here: downloading, installed or failed."""
        return await self._updates.report(self.reference, self.version, state, reason)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.reference} {self.version}>"


@dataclass
class AsyncUpdateCheck:
    """The answer to a check: what to install, what to replace, what stays, what to remove."""

    available: list[AsyncDownloadablePackage] = field(default_factory=list)
    changed: list[AsyncDownloadablePackage] = field(default_factory=list)
    unchanged: list[Package] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)


class AsyncDeployment:
    """A rollout of one package version, with its progress (`counts` per reported state)."""

    def __init__(self, updates: AsyncUpdates, data: dict[str, Any]) -> None:
        self._updates = updates
        self.data = data

    id = property(lambda self: str(self.data["id"]))
    state = property(lambda self: str(self.data["state"]))
    percentage = property(lambda self: float(self.data["percentage"]))
    counts = property(lambda self: dict(self.data["counts"]))

    async def refresh(self) -> AsyncDeployment:
        self.data = await self._updates._client.get(f"deployments/{self.id}")
        return self

    async def update(self, **changes: Any) -> AsyncDeployment:
        """Change state, percentage, rules, name, failure_threshold or min_reports."""
        self.data = await self._updates._client.patch(f"deployments/{self.id}", changes)
        return self

    async def pause(self) -> AsyncDeployment:
        return await self.update(state="paused")

    async def resume(self) -> AsyncDeployment:
        return await self.update(state="active")

    async def abort(self) -> AsyncDeployment:
        return await self.update(state="aborted")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.data['name']!r} {self.state}>"


def _path(reference: str, version: str) -> str:
    return f"packages/{quote(reference, safe='')}/versions/{quote(version, safe='')}"


class AsyncUpdates:
    """Check for, download and report updates; publish package versions and deploy them.

    `public_key` is the organization's signing key the device was provisioned with (the
    client's `update_key`): with it, every package must carry a valid signature."""

    def __init__(self, client: AsyncClient, public_key: str | None = None) -> None:
        self._client = client
        self.public_key = public_key

    async def check(
        self,
        installed: Iterable[Package] = (),
        properties: Mapping[str, Any] | None = None,
        *,
        device_id: str | None = None,
    ) -> AsyncUpdateCheck:
        """Ask what this device should run, given what it has installed and its properties
        (`device_id`: ask on behalf of a device, as a user or app)."""
        have = {p.reference: p.version for p in installed}
        body: dict[str, Any] = {
            "installed": [{"reference": r, "version": v} for r, v in have.items()],
            "properties": dict(properties or {}),
        }
        if device_id is not None:
            body["device_id"] = device_id
        answer = await self._client.post("updates/check", body)
        return AsyncUpdateCheck(
            available=[AsyncDownloadablePackage(self, p, None) for p in answer["available"]],
            changed=[
                AsyncDownloadablePackage(self, p, have.get(p["reference"]))
                for p in answer["changed"]
            ],
            unchanged=[Package(p["reference"], p["version"]) for p in answer["unchanged"]],
            unavailable=list(answer["unavailable"]),
        )

    async def report(
        self,
        reference: str,
        version: str,
        state: str,
        reason: str | None = None,
        *,
        device_id: str | None = None,
    ) -> dict[str, Any]:
        """Report a package's progress on this device: downloading, installed or failed."""
        if state not in STATES:
            raise ValueError(f"state must be one of {', '.join(STATES)}")
        body = {"reference": reference, "version": version, "state": state, "reason": reason}
        if device_id is not None:
            body["device_id"] = device_id
        return await self._client.post("updates/reports", body)  # type: ignore[no-any-return]

    async def publish(
        self,
        reference: str,
        version: str,
        source: Source,
        *,
        metadata: Mapping[str, Any] | None = None,
        filename: str | None = None,
        signing_key: SigningKey | None = None,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """Upload a package version (streamed; a path, binary file or (name, file) pair). With
        `signing_key` it is signed here, so the private key never leaves this machine."""
        headers = {"X-Tether-Metadata": json.dumps(dict(metadata or {}), separators=(",", ":"))}
        with opened_source(source) as (stream, size):
            if size is not None:
                headers["Content-Length"] = str(size)
            name = filename or source_name(source)
            if signing_key is not None:
                length, digest = await _async_offload(measure, stream)
                headers["X-Tether-Signature"] = signing_key.sign_package(
                    reference, canonical_version(version), length, digest
                )
            return await self._client.request(  # type: ignore[no-any-return]
                "PUT",
                _path(reference, version),
                params={"filename": name} if name else None,
                content=_async_chunks(stream, progress, size),
                headers=headers,
            )

    async def versions(self, reference: str | None = None) -> list[dict[str, Any]]:
        """Published package versions (every page), oldest first."""
        return await self._client.get_all("packages", {"reference": reference, "limit": 500})

    async def installed(self, reference: str | None = None) -> list[dict[str, Any]]:
        """The versions the fleet runs: `{reference, version, devices}` for each, as devices
        said in their update checks and installed reports."""
        params = {"reference": reference} if reference else None
        return await self._client.get("updates/installed", params)  # type: ignore[no-any-return]

    async def history(self, device_id: str) -> dict[str, Any]:
        """A device's installed packages and its latest report on each deployment."""
        return await self._client.get(f"devices/{device_id}/updates")  # type: ignore[no-any-return]

    async def deploy(
        self,
        reference: str,
        version: str,
        *,
        rules: Iterable[Mapping[str, Any]] = (),
        percentage: float = 100.0,
        name: str = "",
        failure_threshold: float | None = None,
        min_reports: int = 10,
    ) -> AsyncDeployment:
        """Roll a version out to the devices `rules` select, `percentage` of them (stable per
        device); `failure_threshold` (0..1) aborts it once that share of reports failed."""
        body = {
            "reference": reference,
            "version": version,
            "rules": [dict(r) for r in rules],
            "percentage": percentage,
            "name": name,
            "failure_threshold": failure_threshold,
            "min_reports": min_reports,
        }
        return AsyncDeployment(self, await self._client.post("deployments", body))

    async def deployment(self, deployment_id: str) -> AsyncDeployment:
        return AsyncDeployment(self, await self._client.get(f"deployments/{deployment_id}"))
