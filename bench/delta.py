"""Signature and delta MB/s of `tether.delta` beside Debian's `rdiff` on the same files, in one run.

    .venv/bin/python bench/delta.py [--mib 256]

Two cases on a random file of `--mib` MiB: the new file with 1% of its bytes rewritten in 256
scattered runs, and a new file with no content in common. Prints MB/s of each step
for both tools, the ratios, and the delta sizes (ours against rdiff's, and against the file).
Needs `rdiff` (apt-get install rdiff).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tether import delta

EDITS = 256


def timed(step: Callable[[], object]) -> float:
    started = time.perf_counter()
    step()
    return time.perf_counter() - started


def make_files(work: Path, size: int) -> tuple[Path, Path, Path]:
    rng = random.Random(256)
    base = os.urandom(size)
    edited = bytearray(base)
    run = max(1, size // 100 // EDITS)
    for _ in range(EDITS):
        at = rng.randrange(size - run)
        edited[at : at + run] = rng.randbytes(run)
    paths = work / "base", work / "edited", work / "unrelated"
    paths[0].write_bytes(base)
    paths[1].write_bytes(edited)
    paths[2].write_bytes(os.urandom(size))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=256)
    args = parser.parse_args()
    rdiff = shutil.which("rdiff")
    if rdiff is None:
        sys.exit("rdiff is needed: apt-get install rdiff")
    work = Path(tempfile.mkdtemp(prefix="tether-delta-"))
    try:
        size = args.mib * 1024 * 1024
        base, edited, unrelated = make_files(work, size)
        mb = size / 1e6

        def our_signature() -> None:
            with base.open("rb") as f, (work / "ours.sig").open("wb") as out:
                delta.signature(f, out)

        def our_delta(new: Path, name: str) -> Callable[[], None]:
            def run() -> None:
                with (
                    (work / "ours.sig").open("rb") as s,
                    new.open("rb") as n,
                    (work / name).open("wb") as out,
                ):
                    delta.delta(s, n, out)

            return run

        def rdiff_run(*argv: str) -> Callable[[], None]:
            return lambda: subprocess.run([rdiff, "-f", *argv], check=True)

        rows = []
        ours = timed(our_signature)
        theirs = timed(rdiff_run("signature", str(base), str(work / "rdiff.sig")))
        same = (work / "ours.sig").read_bytes() == (work / "rdiff.sig").read_bytes()
        rows.append(("signature", ours, theirs, f"identical: {same}"))
        for label, new in (("delta, 1% edited", edited), ("delta, unrelated", unrelated)):
            name = label.split(", ")[1].replace("%", "pc").replace(" ", "-")
            ours = timed(our_delta(new, f"ours-{name}.delta"))
            theirs = timed(
                rdiff_run(
                    "delta", str(work / "rdiff.sig"), str(new), str(work / f"rdiff-{name}.delta")
                )
            )
            our_size = (work / f"ours-{name}.delta").stat().st_size
            their_size = (work / f"rdiff-{name}.delta").stat().st_size
            rows.append(
                (
                    label,
                    ours,
                    theirs,
                    f"delta {our_size / 1e6:.1f} MB = {our_size / their_size:.4f}x rdiff's, "
                    f"{our_size / size:.1%} of the file",
                )
            )
        print(
            f"{args.mib} MiB random file; Python {sys.version.split()[0]}; librsync via "
            "python-rsync; rdiff from Debian"
        )
        print(f"{'step':<20}{'tether MB/s':>12}{'rdiff MB/s':>12}{'ratio':>8}  notes")
        for label, ours, theirs, note in rows:
            print(f"{label:<20}{mb / ours:>12.0f}{mb / theirs:>12.0f}{theirs / ours:>8.2f}  {note}")
        sig_size = (work / "ours.sig").stat().st_size
        edited_delta = (work / "ours-1pc-edited.delta").stat().st_size
        print(
            f"sync of the 1%-edited file moves signature + delta = "
            f"{(sig_size + edited_delta) / 1e6:.1f} MB of {mb:.0f} MB "
            f"({(sig_size + edited_delta) / size:.1%})"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
        os.sync()


if __name__ == "__main__":
    main()
