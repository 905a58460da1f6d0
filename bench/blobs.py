"""File download throughput with blobs on local disk beside blobs in an S3-compatible store
(moto's standalone server, on loopback), and the store's own speed for the same object fetched
straight from it, in one run; ratios printed.

    .venv/bin/python bench/blobs.py [--size-mib 256]

Needs curl. Starts moto's server and two `tether serve` processes on free loopback ports (SQLite
in temporary folders; one with TETHER_BLOBS_URL), uploads one random file of --size-mib to each,
and times single-stream downloads by curl to /dev/null (best of 3).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _common import admin_token, free_port, start_tether

BUCKET = "tether-bench"


def best_of_three(url: str, token: str | None) -> float:
    """Seconds of the fastest of three downloads of `url` by curl."""
    command = ["curl", "-sf", "-o", "/dev/null", url]
    if token:
        command[1:1] = ["-H", f"Authorization: Bearer {token}"]
    times = []
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run(command, check=True)
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=256)
    args = parser.parse_args()
    if not shutil.which("curl"):
        sys.exit("curl is needed: apt-get install curl")
    moto = shutil.which("moto_server", path=os.path.dirname(sys.executable))
    if moto is None:
        sys.exit("moto's server is needed: pip install 'moto[server]'")
    work = Path(tempfile.mkdtemp(prefix="tether-bench-"))
    source = work / "file.bin"
    with source.open("wb") as out:
        for _ in range(args.size_mib):
            out.write(os.urandom(1024 * 1024))
    s3_port = free_port()
    endpoint = f"http://127.0.0.1:{s3_port}"
    store = subprocess.Popen(
        [moto, "-H", "127.0.0.1", "-p", str(s3_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    servers = []
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.put(f"{endpoint}/{BUCKET}")
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        s3 = {
            "blobs_url": f"s3://{BUCKET}/bench",
            "s3_endpoint": endpoint,
            "s3_access_key_id": "bench",
            "s3_secret_access_key": "bench-secret",
        }
        results = {}
        for name, settings in (("local disk", {}), ("S3 (moto)", s3)):
            port = free_port()
            servers.append(start_tether(work / name.split()[0], port, None, **settings))
            url = f"http://127.0.0.1:{port}"
            token = admin_token(url)
            with source.open("rb") as body:
                httpx.put(
                    f"{url}/api/v1/files/data/file.bin",
                    content=body,
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=None,
                ).raise_for_status()
            results[name] = best_of_three(f"{url}/api/v1/files/data/file.bin", token)
        sha = subprocess.run(
            ["sha256sum", str(source)], capture_output=True, text=True, check=True
        ).stdout.split()[0]
        direct = f"{endpoint}/{BUCKET}/bench/{sha[:2]}/{sha[2:4]}/{sha}"
        results["moto itself"] = best_of_three(direct, None)
    finally:
        for server in servers:
            server.terminate()
            server.wait(30)
        store.terminate()
        store.wait(30)
        shutil.rmtree(work, ignore_errors=True)
    mib = args.size_mib
    local = mib / results["local disk"]
    print(f"single-stream download of {mib} MiB, best of 3, curl to /dev/null")
    for name, seconds in results.items():
        speed = mib / seconds
        print(f"{name:>12}: {speed:8.1f} MiB/s  ratio to local disk {speed / local:.2f}")
    print(f"Tether on S3 / the store itself: {results['moto itself'] / results['S3 (moto)']:.2f}")


if __name__ == "__main__":
    main()
