"""`tether packages`, `tether deployments` and `tether updates`: ship software to the fleet."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

import tether
from tether.cli.common import (
    Commands,
    JsonOption,
    QuietOption,
    UrlOption,
    connect,
    listed_id,
    parse_json,
    split_pair,
)
from tether.cli.output import fail, progress_bar, record, table
from tether.client._updates import STATES

packages_app = Commands(help="Packages: publish versions, list them, manage the signing key.")
deployments_app = Commands(
    help="Deployments: roll a version out by rules and percentage; pause, resume, abort."
)
updates_app = Commands(help="The device side: check for updates and download them.")

KeyOption = Annotated[
    Path | None,
    typer.Option(
        "--key",
        envvar="TETHER_SIGNING_KEY",
        help="Private signing key (PEM) to sign with here, when the server does not hold it.",
    ),
]


DeploymentArgument = Annotated[str, typer.Argument(help="Deployment name or id.")]

RULE_EXAMPLE = '\'{"property": "region", "equals": "eu"}\''


def _json_object(text: str | None, what: str, example: str | None = None) -> dict[str, Any]:
    if not text:
        return {}
    value = parse_json(text, what, *([example] if example else []))
    if not isinstance(value, dict):
        raise fail(f"{what} must be a JSON object")
    return value


@packages_app.command("publish")
def publish(
    reference: str,
    version: str,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    metadata: Annotated[str | None, typer.Option(help="JSON object kept with the version.")] = None,
    key: KeyOption = None,
    url: UrlOption = None,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """Upload a package version (streamed, signed when a key is given)."""
    extra = _json_object(metadata, "--metadata")
    signing_key = _load_key(key) if key else None
    with connect(url) as client, progress_bar(f"publish {file.name}", quiet) as bar:
        out = client.updates.publish(
            reference, version, file, metadata=extra, signing_key=signing_key, progress=bar
        )
    record(out, as_json)


def _load_key(path: Path) -> tether.SigningKey:
    try:
        return tether.SigningKey.load(path)
    except (OSError, ValueError) as exc:
        raise fail(f"cannot read the signing key {path}: {exc}") from None


@packages_app.command("list")
def list_versions(
    reference: Annotated[str | None, typer.Option(help="Only this package.")] = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Published package versions."""
    with connect(url) as client:
        versions = client.updates.versions(reference)
    for v in versions:
        v["signed"] = (
            bool(v.get("signature")) if as_json else ("yes" if v.get("signature") else "no")
        )
    table(versions, ["reference", "version", "filename", "size", "signed", "created_at"], as_json)


@packages_app.command("create-key")
def create_key(
    out: Annotated[
        Path | None,
        typer.Option(
            help="Write a new private key here (PEM, mode 600) and register its public half."
        ),
    ] = None,
    on_server: Annotated[
        bool, typer.Option("--on-server", help="Let the server make and hold the key instead.")
    ] = False,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Give the organization a package signing key (admins only)."""
    if (out is None) == (not on_server):
        raise fail("Give either --out FILE (you keep the key) or --on-server.")
    with connect(url) as client:
        if on_server:
            answer = client.post("packages/signing-key", {"generate": True})
        else:
            assert out is not None
            key = tether.SigningKey.generate()
            key.save(out)
            answer = client.post("packages/signing-key", {"public_key": key.public_key})
    record(answer, as_json)
    if not as_json:
        typer.echo(
            "Provision devices with the public key (Client(update_key=...) or TETHER_UPDATE_KEY)."
        )


@packages_app.command("key")
def show_key(url: UrlOption = None, as_json: JsonOption = False) -> None:
    """The organization's public signing key."""
    with connect(url) as client:
        record(client.get("packages/signing-key"), as_json)


def _show(deployment: tether.Deployment, as_json: bool) -> None:
    data = dict(deployment.data)
    if not as_json:
        counts = data.pop("counts")
        data.update({f"reports {state}": n for state, n in counts.items()})
    record(data, as_json)


@deployments_app.command("create")
def create(
    reference: str,
    version: str,
    rule: Annotated[
        list[str] | None,
        typer.Option(
            help='A rule as JSON, e.g. \'{"property": "region", "equals": "eu"}\' (repeat).'
        ),
    ] = None,
    percent: Annotated[
        float, typer.Option(min=0, max=100, help="Share of the matching devices, 0..100.")
    ] = 100.0,
    name: Annotated[str, typer.Option(help="A name to find it by.")] = "",
    failure_threshold: Annotated[
        float | None, typer.Option(help="Abort once this share (0..1) of reports failed.")
    ] = None,
    min_reports: Annotated[
        int, typer.Option(help="Reports needed before the threshold applies.")
    ] = 10,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Roll a package version out."""
    rules = [_json_object(r, "--rule", RULE_EXAMPLE) for r in rule or []]
    with connect(url) as client:
        deployment = client.updates.deploy(
            reference,
            version,
            rules=rules,
            percentage=percent,
            name=name,
            failure_threshold=failure_threshold,
            min_reports=min_reports,
        )
    _show(deployment, as_json)


@deployments_app.command("list")
def list_deployments(url: UrlOption = None, as_json: JsonOption = False) -> None:
    """Every deployment with its progress."""
    with connect(url) as client:
        rows = client.get_all("deployments", {"limit": 500})
    for row in rows:
        row.update(row.pop("counts"))
    columns = ["id", "name", "reference", "version", "state", "percentage", "installed", "failed"]
    table(rows, columns, as_json)


@deployments_app.command("show")
def show(
    deployment: DeploymentArgument, url: UrlOption = None, as_json: JsonOption = False
) -> None:
    """A deployment: rules, percentage, state and the devices' reports per state."""
    with connect(url) as client:
        _show(_deployment(client, deployment), as_json)


def _deployment(client: tether.Client, name_or_id: str) -> tether.Deployment:
    """The deployment named `name_or_id`, or with that id."""
    listed = client.get_all("deployments", {"limit": 500})
    return client.updates.deployment(listed_id(listed, "deployment", name_or_id))


def _change(deployment: str, url: str | None, as_json: bool, **changes: Any) -> None:
    with connect(url) as client:
        _show(_deployment(client, deployment).update(**changes), as_json)


@deployments_app.command("pause")
def pause(
    deployment_id: DeploymentArgument, url: UrlOption = None, as_json: JsonOption = False
) -> None:
    """Offer the version to no new device (those that started keep it)."""
    _change(deployment_id, url, as_json, state="paused")


@deployments_app.command("resume")
def resume(
    deployment_id: DeploymentArgument, url: UrlOption = None, as_json: JsonOption = False
) -> None:
    """Offer the version again."""
    _change(deployment_id, url, as_json, state="active")


@deployments_app.command("abort")
def abort(
    deployment_id: DeploymentArgument, url: UrlOption = None, as_json: JsonOption = False
) -> None:
    """Stop for good: devices fall back to the previous deployment of the package."""
    _change(deployment_id, url, as_json, state="aborted")


@deployments_app.command("set")
def set_percentage(
    deployment_id: DeploymentArgument,
    percent: Annotated[
        float, typer.Option(min=0, max=100, help="New share of matching devices, 0..100.")
    ],
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Grow (or shrink) a staged rollout; devices already in it stay in."""
    _change(deployment_id, url, as_json, percentage=percent)


InstalledOption = Annotated[
    list[str] | None, typer.Option(help="An installed package as REFERENCE=VERSION (repeat).")
]
PropertyOption = Annotated[
    list[str] | None, typer.Option("--property", help="A device property as NAME=VALUE.")
]
DeviceOption = Annotated[str | None, typer.Option(help="Check for this device (as a user).")]


def _check(
    client: tether.Client, installed: list[str] | None, prop: list[str] | None, device: str | None
) -> tether.UpdateCheck:
    have = [
        tether.Package(*_pair(item, "--installed REFERENCE=VERSION")) for item in installed or []
    ]
    props = dict(_pair(item, "--property NAME=VALUE") for item in prop or [])
    return client.updates.check(have, props, device_id=device)


@updates_app.command("check")
def check(
    installed: InstalledOption = None,
    prop: PropertyOption = None,
    device: DeviceOption = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """What this device (or --device) should install."""
    with connect(url) as client:
        answer = _check(client, installed, prop, device)
    rows = [
        {"list": "available", "reference": p.reference, "version": p.version, "size": p.size}
        for p in answer.available
    ]
    rows += [
        {"list": "changed", "reference": p.reference, "version": p.version, "size": p.size}
        for p in answer.changed
    ]
    rows += [
        {"list": "unchanged", "reference": p.reference, "version": p.version}
        for p in answer.unchanged
    ]
    rows += [{"list": "unavailable", "reference": r} for r in answer.unavailable]
    if not as_json and not answer.available and not answer.changed:
        typer.echo("Nothing to install: no package is offered that this device lacks.", err=True)
    table(rows, ["list", "reference", "version", "size"], as_json)


@updates_app.command("report")
def report(
    reference: str,
    version: str,
    state: Annotated[str, typer.Argument(help="downloading, installed or failed.")],
    reason: Annotated[str | None, typer.Option(help="Why it failed, in words.")] = None,
    device: Annotated[str | None, typer.Option(help="Report for this device (as a user).")] = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Tell the server how installing a package went on this device (or --device); a
    deployment counts it, and aborts by itself past its failure threshold."""
    if state not in STATES:
        raise fail(f"The state is one of {', '.join(STATES)}, not {state!r}.")
    with connect(url) as client:
        record(client.updates.report(reference, version, state, reason, device_id=device), as_json)


@updates_app.command("download")
def download(
    reference: Annotated[
        list[str] | None, typer.Argument(help="Only these packages (default: all offered).")
    ] = None,
    dest: Annotated[
        str,
        typer.Option(
            help="Folder to save into (made when it ends with /), or, for one package, a file."
        ),
    ] = ".",
    installed: InstalledOption = None,
    prop: PropertyOption = None,
    device: DeviceOption = None,
    trust: Annotated[
        str | None,
        typer.Option(
            envvar="TETHER_UPDATE_KEY",
            help="The organization's public signing key: refuse packages it did not sign.",
        ),
    ] = None,
    url: UrlOption = None,
    quiet: QuietOption = False,
    as_json: JsonOption = False,
) -> None:
    """Check, then download what this device (or --device) should install, verified.

    A broken download resumes when run again; the file appears only once its size, SHA-256
    (and signature, with --trust) check out."""
    with connect(url) as client:
        if trust:
            client.updates.public_key = trust
        answer = _check(client, installed, prop, device)
        offered = [p for p in [*answer.available, *answer.changed]]
        if reference:
            offered = [p for p in offered if p.reference in reference]
            missing = sorted(set(reference) - {p.reference for p in offered})
            if missing:
                raise fail(f"Nothing to download for {', '.join(missing)}.")
        saved = []
        for package in offered:
            with progress_bar(f"{package.reference} {package.version}", quiet) as bar:
                path = package.download(dest, progress=bar)
            saved.append(
                {"reference": package.reference, "version": package.version, "path": str(path)}
            )
    table(saved, ["reference", "version", "path"], as_json)


def _pair(item: str, form: str) -> tuple[str, str]:
    name, value = split_pair(item, form)
    return name, value.strip()
