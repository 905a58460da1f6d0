"""Refresh the browser assets the server ships (src/tether/server/assets/) from their npm
registry packages, at the versions pinned here; each package's licence is kept beside its files.
Scripts and styles are stored gzipped (`NAME.gz`, served as they are to browsers, which all take
gzip): a quarter of the size in every install, the device SDK's included.

    python scripts/vendor.py          # fetch the pinned versions (needs npm)
    python scripts/vendor.py --check  # exit 1 if a pinned file or licence is missing

Change a version here, run it, and commit what it wrote: nothing is fetched at build or run time.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ASSETS = Path(__file__).resolve().parent.parent / "src" / "tether" / "server" / "assets"

VENDORED: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "swagger-ui": (
        "swagger-ui-dist",
        "5.35.0",
        (
            "swagger-ui-bundle.js",
            "swagger-ui-standalone-preset.js",
            "swagger-ui.css",
            "favicon-32x32.png",
            "LICENSE",
            "NOTICE",
        ),
    ),
    "uplot": (
        "uplot",
        "1.6.32",
        ("dist/uPlot.iife.min.js", "dist/uPlot.min.css", "LICENSE"),
    ),
}
"""Folder under assets/: (npm package, pinned version, files taken from the package)."""


ZIPPED = (".js", ".css")


def stored(name: str) -> str:
    """The file a vendored file is kept as (flat in its folder; scripts and styles gzipped)."""
    base = Path(name).name
    return f"{base}.gz" if base.endswith(ZIPPED) else base


def fetch(folder: str, package: str, version: str, names: tuple[str, ...]) -> None:
    target = ASSETS / folder
    with tempfile.TemporaryDirectory() as scratch:
        packed = subprocess.run(
            ["npm", "pack", f"{package}@{version}", "--json", "--pack-destination", scratch],
            check=True,
            capture_output=True,
            text=True,
        )
        tarball = Path(scratch) / json.loads(packed.stdout)[0]["filename"]
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tarball) as archive:
            for name in names:
                member = archive.extractfile(f"package/{name}")
                if member is None:
                    raise SystemExit(f"{package}@{version} has no {name}")
                data = member.read()
                (target / stored(name)).write_bytes(
                    gzip.compress(data, 9, mtime=0) if name.endswith(ZIPPED) else data
                )
    (target / "SOURCE").write_text(f"{package}@{version} from the npm registry\n")
    print(f"{folder}: {package}@{version}")


def missing() -> list[str]:
    absent = []
    for folder, (package, version, names) in VENDORED.items():
        source = ASSETS / folder / "SOURCE"
        if not source.exists() or f"{package}@{version}" not in source.read_text():
            absent.append(f"{folder}/SOURCE ({package}@{version})")
        absent += [f"{folder}/{n}" for n in names if not (ASSETS / folder / stored(n)).exists()]
    return absent


def main(check: bool) -> int:
    if check:
        absent = missing()
        if absent:
            print(f"missing or stale: {', '.join(absent)} (run python scripts/vendor.py)")
            return 1
        return 0
    for folder, (package, version, names) in VENDORED.items():
        fetch(folder, package, version, names)
    return 0


if __name__ == "__main__":
    sys.exit(main("--check" in sys.argv))
