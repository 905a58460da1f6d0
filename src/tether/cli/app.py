"""The commands of `tether`. Each talks to the server through the SDK, like any user would."""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Annotated, Any

import typer

import tether
from tether.cli import admin, control, files, projects, realtime, telemetry, updates, users
from tether.cli.common import (
    Commands,
    DocumentOption,
    Group,
    JsonOption,
    UrlOption,
    connect,
    json_document,
    named,
    parse_json,
    project_of,
    split_pair,
)
from tether.cli.output import emit_json, fail, record, table
from tether.client._credentials import (
    read_saved_logins,
    same_server,
    saved_login,
    write_saved_logins,
)

CLOUD, SESSION, FLEET, UPDATES, REALTIME, ACCESS, RAW = PANELS = (
    "Run the cloud",
    "Sign in",
    "Fleet",
    "Software updates",
    "Realtime",
    "People and access",
    "Any API call",
)


class Root(Group):
    panels = PANELS


app = Commands(cls=Root, help="Tether: a self-hosted device cloud.", pretty_exceptions_enable=False)
tokens_app = Commands(help="API tokens: create, list, revoke.")
devices_app = Commands(help="Devices: list, create, show, rotate a secret, delete.")
pairing_app = Commands(help="Approve devices that are pairing.")


@app.command(
    rich_help_panel=CLOUD,
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    help="Run the Tether cloud (SQLite in the data folder unless TETHER_DATABASE_URL is set).\n\n"
    "Every setting is a flag, --NAME VALUE or --NAME=VALUE: --port 9000, --host 0.0.0.0, "
    "--data DIR, --workers 4, --database-url URL, --redis-url URL, ... Each may also come from "
    "its TETHER_NAME environment variable; docs/configuration.md lists them all.",
)
def serve(
    ctx: typer.Context,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="A setting as NAME=VALUE, the same as --NAME VALUE."),
    ] = None,
) -> None:
    """Run the cloud on the settings given (`flag_pairs`) over the environment's."""
    try:
        import uvicorn

        from tether.server.app import WORKER_OF, create_app, uvicorn_options
        from tether.server.settings import Settings, SettingsError
    except ImportError:
        raise fail("The server needs its extra: pip install 'tether[server]'") from None
    overrides = dict(flag_pairs(ctx.args))
    for item in set_ or []:
        name, value = split_pair(item, "--set NAME=VALUE")
        overrides[name.replace("-", "_")] = value
    try:
        settings = Settings.load(overrides)
        if settings.blobs_url:
            from tether.server.files.objects import s3_store, usable

            asyncio.run(usable(s3_store(settings)))
    except SettingsError as exc:
        raise fail(str(exc).replace("unknown setting", "No setting is called")) from None
    problem = _unbindable(settings.host, settings.port)
    if problem:
        raise fail(
            f"Cannot listen on {settings.host}:{settings.port} ({problem}): is another server "
            f"there? Choose another port with --port (or TETHER_PORT)."
        )
    processes = settings.process_count
    base = f"http://{_shown_host(settings.host)}:{settings.port}"
    typer.echo(
        f"Tether {tether.__version__} on {base} with {processes} "
        f"worker{'s' if processes > 1 else ''}\n"
        f"  console:  {base}/\n  API docs: {base}/api/v1/docs\n  health:   {base}/api/v1/health"
    )
    if processes == 1:
        uvicorn.run(create_app(settings), **uvicorn_options(settings))
        return
    os.environ.update(settings.environment())
    os.environ[WORKER_OF] = str(os.getpid())
    uvicorn.run(
        "tether.server.app:create_app", factory=True, workers=processes, **uvicorn_options(settings)
    )


def flag_pairs(args: list[str]) -> list[tuple[str, str]]:
    """`--name value` and `--name=value` as (name, value), the name with underscores."""
    pairs = []
    rest = iter(args)
    for arg in rest:
        if not arg.startswith("--") or len(arg) < 3:
            raise fail(f"Give settings as --NAME VALUE, not {arg!r}.")
        name, sep, value = arg[2:].partition("=")
        if not sep:
            following = next(rest, None)
            if following is None:
                raise fail(f"--{name} needs a value.")
            value = following
        pairs.append((name.replace("-", "_"), value))
    return pairs


def _unbindable(host: str, port: int) -> str | None:
    """Why `tether serve` could not listen on host:port (checked before the first start
    creates an admin nobody would see), or None."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        return str(exc)
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def _shown_host(host: str) -> str:
    """The host a browser on this machine reaches a server listening on `host` at."""
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


@app.command(rich_help_panel=SESSION)
def login(
    url: Annotated[str, typer.Argument(help="Server URL, e.g. http://127.0.0.1:8000")],
    organization: Annotated[
        str | None, typer.Option(prompt=True, help="Organization name (prompted when not given).")
    ] = None,
    username: Annotated[
        str | None, typer.Option(prompt=True, help="User name (prompted when not given).")
    ] = None,
    password: Annotated[
        str | None,
        typer.Option(
            prompt=True,
            hide_input=True,
            envvar="TETHER_PASSWORD",
            help="Password (prompted when not given).",
        ),
    ] = None,
) -> None:
    """Sign in and save an API token for later commands."""
    url = url.strip().rstrip("/")
    try:
        with tether.Client(
            url, username=username, password=password, organization=organization, environ={}
        ) as client:
            created = client.post("tokens", {"name": f"tether-cli@{socket.gethostname()}"})
    except tether.TetherError as exc:
        raise fail(exc.message) from None
    logins = read_saved_logins()
    servers = logins.setdefault("servers", {})
    earlier = saved_login(logins, url)
    if earlier is not None:
        servers.pop(earlier[0])
    servers[url] = {
        "token": created["token"],
        "token_id": created["id"],
        "organization": organization,
        "username": username,
    }
    logins["default"] = url
    path = write_saved_logins(logins)
    typer.echo(f"Logged in to {url} as {username} ({organization}); token saved in {path}")


@app.command(rich_help_panel=SESSION)
def logout(url: UrlOption = None) -> None:
    """Revoke the saved token and forget it."""
    logins = read_saved_logins()
    url = (url or logins.get("default") or "").rstrip("/")
    found = saved_login(logins, url) if url else None
    if found is None:
        raise fail(f"Not logged in to {url or 'any server'}.")
    key, entry = found
    logins["servers"].pop(key)
    try:
        with tether.Client(key, token=entry["token"], environ={}) as client:
            client.delete(f"tokens/{entry['token_id']}")
    except tether.TetherError:
        pass
    if logins.get("default") and same_server(logins["default"]) == same_server(key):
        logins.pop("default")
    write_saved_logins(logins)
    typer.echo(f"Logged out of {key}.")


@app.command(rich_help_panel=SESSION)
def whoami(url: UrlOption = None, as_json: JsonOption = False) -> None:
    """Show who the current credentials belong to."""
    with connect(url) as client:
        record(client.whoami(), as_json)


@tokens_app.command("create")
def tokens_create(
    name: Annotated[str, typer.Argument(help="A name to recognise the token by.")],
    read_only: Annotated[bool, typer.Option("--read-only", help="Refuse every write.")] = False,
    project: Annotated[
        str | None, typer.Option(help="Limit the token to one project (its name or id).")
    ] = None,
    expires_in: Annotated[int | None, typer.Option(help="Lifetime in seconds.")] = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create an API token; it is shown once."""
    body: dict[str, Any] = {"name": name, "read_only": read_only}
    if expires_in:
        body["expires_in"] = expires_in
    with connect(url) as client:
        if project:
            body["project_id"] = project_of(client, project)
        record(client.post("tokens", body), as_json)


@tokens_app.command("list")
def tokens_list(url: UrlOption = None, as_json: JsonOption = False) -> None:
    """List your API tokens."""
    with connect(url) as client:
        rows = client.get_all("tokens", {"limit": 500})
    table(
        rows,
        ["id", "name", "prefix", "read_only", "project_id", "expires_at", "revoked_at"],
        as_json,
    )


@tokens_app.command("revoke")
def tokens_revoke(token_id: str, url: UrlOption = None) -> None:
    """Revoke an API token by id."""
    with connect(url) as client:
        client.delete(f"tokens/{token_id}")
    typer.echo(f"Revoked {token_id}.")


@devices_app.command("list")
def devices_list(
    name: Annotated[str | None, typer.Option(help="Only this name.")] = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """List devices."""
    with connect(url) as client:
        rows = [d.data for d in client.devices.find(name=name)]
    table(rows, ["id", "name", "online", "location_id", "created_at"], as_json)


@devices_app.command("create")
def devices_create(
    name: str,
    document: DocumentOption = None,
    as_env: Annotated[
        bool,
        typer.Option(
            "--env",
            help="Print TETHER_URL, TETHER_DEVICE_ID and TETHER_DEVICE_SECRET lines for the "
            "device's environment (as `tether pair` does).",
        ),
    ] = False,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a device; its secret is shown once."""
    body = {"name": name, "document": json_document(document)}
    with connect(url) as client:
        made = client.post("devices", body)
        server = client.url
    if as_env:
        typer.echo(f"TETHER_URL={server}")
        typer.echo(f"TETHER_DEVICE_ID={made['id']}")
        typer.echo(f"TETHER_DEVICE_SECRET={made['secret']}")
    else:
        record(made, as_json)


DeviceArgument = Annotated[str, typer.Argument(help="Device name or id.")]


@devices_app.command("show")
def devices_show(
    device: DeviceArgument, url: UrlOption = None, as_json: JsonOption = False
) -> None:
    """Show one device."""
    with connect(url) as client:
        record(client.devices.get(named(client, "devices", device)).data, as_json)


@devices_app.command("rotate-secret")
def devices_rotate_secret(
    device: DeviceArgument, url: UrlOption = None, as_json: JsonOption = False
) -> None:
    """Give a device a new secret, shown once; the old one stops working at once."""
    with connect(url) as client:
        device_id = named(client, "devices", device)
        secret = client.devices.rotate_secret(device_id)
    record({"device_id": device_id, "device_secret": secret}, as_json)


@devices_app.command("delete")
def devices_delete(device: DeviceArgument, url: UrlOption = None) -> None:
    """Delete a device (its telemetry, files and reports with it)."""
    with connect(url) as client:
        found = client.devices.get(named(client, "devices", device))
        found.delete()
    typer.echo(f"Deleted device {found.name} ({found.id}).")


@app.command(rich_help_panel=FLEET)
def pair(
    url: UrlOption = None,
    name: Annotated[str | None, typer.Option(help="Name the device asks for.")] = None,
    organization: Annotated[
        str | None,
        typer.Option(help="Organization to join: its people see this device waiting."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Pair this device: show a code, wait for a user to approve it, print the credentials.

    The server is --url, TETHER_URL, or the one logged in to last."""
    url = url or os.environ.get("TETHER_URL") or read_saved_logins().get("default")
    if not url:
        raise fail(
            "Which server? Give it: tether pair --url https://tether.example (or TETHER_URL)."
        )
    typer.echo(f"Pairing with {url} ...", err=True)

    def show(code: tether.PairingCode) -> None:
        typer.echo(
            f"Pairing code: {code.user_code}  (approve with: tether pairing approve "
            f"{code.user_code}; valid {code.expires_in} s)",
            err=True,
        )

    try:
        with tether.Client(
            url,
            allow_pairing=True,
            on_pairing_code=show,
            pairing_name=name,
            pairing_organization=organization,
            environ={},
        ) as client:
            client.get_auth()
            credentials = client.credentials
    except tether.TetherError as exc:
        raise fail(exc.message) from None
    result = {"device_id": credentials.device_id, "device_secret": credentials.device_secret}
    if as_json:
        emit_json(result)
    else:
        typer.echo(f"TETHER_DEVICE_ID={result['device_id']}")
        typer.echo(f"TETHER_DEVICE_SECRET={result['device_secret']}")


@pairing_app.command("approve")
def pairing_approve(
    code: str,
    name: Annotated[str | None, typer.Option(help="Name for the new device.")] = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Approve a pairing code shown by a device; this creates the device."""
    body: dict[str, Any] = {"user_code": code}
    if name:
        body["name"] = name
    with connect(url) as client:
        record(client.post("pairing/approve", body), as_json)


@pairing_app.command("pending")
def pairing_pending(url: UrlOption = None, as_json: JsonOption = False) -> None:
    """Devices waiting to pair that named your organization (`tether pair --organization`).

    Their codes are not shown: approve the one the device itself shows."""
    with connect(url) as client:
        waiting = client.get("pairing/pending")
    table(waiting, ["name", "address", "created_at", "expires_at"], as_json)


@app.command(rich_help_panel=RAW)
def request(
    method: Annotated[str, typer.Argument(help="GET, POST, PUT, PATCH or DELETE.")],
    path: Annotated[str, typer.Argument(help="Full URL, /absolute path, or relative to /api/v1.")],
    body: Annotated[str | None, typer.Option("--data", "-d", help="JSON body.")] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="Query parameter NAME=VALUE (repeatable)."),
    ] = None,
    url: UrlOption = None,
) -> None:
    """Send any API request and print the JSON answer."""
    method = method.upper()
    if method not in {"GET", "POST", "PUT", "PATCH", "DELETE"}:
        raise fail(f"Unknown method {method}.")
    payload = parse_json(body, "--data") if body else None
    params = dict(p.partition("=")[::2] for p in param or [])
    with connect(url) as client:
        result = client.request(method, path, params=params, json=payload)
    if result is not None:
        emit_json(result)


app.add_typer(admin.app, name="admin", rich_help_panel=CLOUD)
app.add_typer(devices_app, name="devices", rich_help_panel=FLEET)
app.add_typer(pairing_app, name="pairing", rich_help_panel=FLEET)
app.add_typer(projects.app, name="projects", rich_help_panel=FLEET)
app.add_typer(telemetry.app, name="telemetry", rich_help_panel=FLEET)
app.add_typer(files.app, name="files", rich_help_panel=FLEET)
app.add_typer(control.commands_app, name="commands", rich_help_panel=FLEET)
app.add_typer(control.twin_app, name="twin", rich_help_panel=FLEET)
app.add_typer(updates.packages_app, name="packages", rich_help_panel=UPDATES)
app.add_typer(updates.deployments_app, name="deployments", rich_help_panel=UPDATES)
app.add_typer(updates.updates_app, name="updates", rich_help_panel=UPDATES)
app.command("listen", rich_help_panel=REALTIME)(realtime.listen)
app.command("broadcast", rich_help_panel=REALTIME)(realtime.broadcast)
app.add_typer(users.app, name="users", rich_help_panel=ACCESS)
app.add_typer(tokens_app, name="tokens", rich_help_panel=ACCESS)
