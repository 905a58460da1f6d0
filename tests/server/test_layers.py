"""Layers point down: a server module imports only from its own layer or those below it
(ground < db < identity < resources < the other areas < state < console and app). Checked on
the source, so a new upward import fails here before it tangles anything."""

from __future__ import annotations

import ast
from pathlib import Path

SERVER = Path(__file__).resolve().parents[2] / "src" / "tether" / "server"

LAYERS: dict[str, int] = {
    "settings": 0,
    "problems": 0,
    "inputs": 0,
    "parameters": 0,
    "apidoc": 0,
    "front": 0,
    "realtime.events": 0,
    "realtime.frames": 2,
    "db": 1,
    "files.blobs": 1,
    "files.objects": 1,
    "identity": 2,
    "resources": 3,
    "commands": 4,
    "files": 4,
    "telemetry": 4,
    "twin": 4,
    "updates": 4,
    "realtime": 4,
    "state": 5,
    "console": 6,
    "app": 6,
}
"""Each package (or module named on its own) and its layer. Realtime's events are ground:
every area publishes through that one small interface. The blob store is infrastructure, like
the database."""

AREAS = 4
"""The layer whose packages do not import each other (each area stands on the ones below)."""

WAIVED = {"state"}
"""Imports every layer may still make: `state` gives handlers the running server (`Tether`)
until one request context replaces it (issue 24)."""


def layer_of(module: str) -> tuple[str, int]:
    """The most specific entry of LAYERS naming `module` (tether.server.x.y), and its layer."""
    parts = module.split(".")[2:]
    for length in range(len(parts), 0, -1):
        name = ".".join(parts[:length])
        if name in LAYERS:
            return name, LAYERS[name]
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def imports() -> list[tuple[str, str]]:
    """(importing module, imported module) for every import of the server by the server."""
    found = []
    for path in sorted(SERVER.rglob("*.py")):
        parts = path.relative_to(SERVER.parents[1]).with_suffix("").parts
        module = ".".join(parts).removesuffix(".__init__")
        if module == "tether.server":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "tether.server."
            ):
                found.append((module, str(node.module)))
    return found


def test_server_layers_only_point_down() -> None:
    upward = []
    for importer, imported in imports():
        (own, below), (name, level) = layer_of(importer), layer_of(imported)
        if name in WAIVED or own == name or imported.startswith(f"tether.server.{own}."):
            continue
        if level > below or (level == below == AREAS and name != own):
            upward.append(f"{importer} (layer {below}) imports {imported} (layer {level})")
    assert upward == []


def test_areas_are_in_a_layer_each() -> None:
    packages = {p.name for p in SERVER.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    modules = {p.stem for p in SERVER.glob("*.py") if p.stem != "__init__"}
    assert (packages | modules) - {name.split(".")[0] for name in LAYERS} == set()
