"""`tether.delta` against Debian's `rdiff` 2.3, both ways, every signature kind, and the
round-trip property on arbitrary inputs."""

from __future__ import annotations

import io
import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tether
from tether import delta

KINDS = sorted(delta.SIGNATURE_MAGICS)


@pytest.fixture(scope="module")
def rdiff() -> str:
    found = shutil.which("rdiff")
    if found is None:
        reason = "Debian's rdiff is not installed (scripts/setup installs it with apt-get)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def edited(data: bytes, seed: int) -> bytes:
    """`data` with some bytes changed, some inserted and some removed."""
    rng = random.Random(seed)
    out = bytearray(data)
    for _ in range(max(1, len(data) // 5000)):
        at = rng.randrange(len(out) + 1)
        action = rng.choice(("change", "insert", "delete"))
        chunk = rng.randbytes(rng.randrange(1, 300))
        if action == "change":
            out[at : at + len(chunk)] = chunk
        elif action == "insert":
            out[at:at] = chunk
        else:
            del out[at : at + len(chunk)]
    return bytes(out)


CASES = [(size, seed) for size, seed in ((0, 1), (1, 2), (2047, 3), (70_000, 4), (1_500_000, 5))]


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(("hash_", "rollsum"), KINDS)
@pytest.mark.parametrize(("size", "seed"), CASES)
def test_signatures_equal_rdiffs(
    rdiff: str, tmp_path: Path, hash_: delta.Hash, rollsum: delta.Rollsum, size: int, seed: int
) -> None:
    basis = write(tmp_path / "basis", random.Random(seed).randbytes(size))
    for block_len, strong_len in ((0, 0), (512, 8)):
        ours = io.BytesIO()
        with basis.open("rb") as f:
            delta.signature(
                f, ours, hash=hash_, rollsum=rollsum, block_len=block_len, strong_len=strong_len
            )
        theirs = tmp_path / "sig"
        subprocess.run(
            [
                rdiff,
                "-f",
                "-H",
                hash_,
                "-R",
                rollsum,
                "-b",
                str(block_len),
                "-S",
                str(strong_len),
                "signature",
                str(basis),
                str(theirs),
            ],
            check=True,
        )
        assert ours.getvalue() == theirs.read_bytes()


@pytest.mark.parametrize(("hash_", "rollsum"), KINDS)
@pytest.mark.parametrize(("size", "seed"), CASES[1:])
def test_deltas_cross_between_tether_and_rdiff(
    rdiff: str, tmp_path: Path, hash_: delta.Hash, rollsum: delta.Rollsum, size: int, seed: int
) -> None:
    old = random.Random(seed).randbytes(size)
    new = edited(old, seed)
    basis, target = write(tmp_path / "old", old), write(tmp_path / "new", new)
    sig = tmp_path / "sig"
    with basis.open("rb") as f, sig.open("wb") as out:
        delta.signature(f, out, hash=hash_, rollsum=rollsum)

    ours = tmp_path / "ours.delta"
    with sig.open("rb") as s, target.open("rb") as n, ours.open("wb") as out:
        delta.delta(s, n, out)
    subprocess.run(
        [rdiff, "-f", "patch", str(basis), str(ours), str(tmp_path / "by-rdiff")], check=True
    )
    assert (tmp_path / "by-rdiff").read_bytes() == new

    theirs = tmp_path / "theirs.delta"
    subprocess.run([rdiff, "-f", "delta", str(sig), str(target), str(theirs)], check=True)
    result = io.BytesIO()
    with basis.open("rb") as b, theirs.open("rb") as d:
        delta.patch(b, d, result)
    assert result.getvalue() == new
    if size > 100_000:
        assert ours.stat().st_size < len(new) // 4


@settings(max_examples=60, deadline=None)
@given(
    old=st.binary(max_size=20_000),
    new=st.binary(max_size=20_000),
    block=st.sampled_from([0, 16, 256]),
)
def test_patch_of_delta_of_signature_is_the_new_file(old: bytes, new: bytes, block: int) -> None:
    sig, d, out = io.BytesIO(), io.BytesIO(), io.BytesIO()
    delta.signature(io.BytesIO(old), sig, block_len=block)
    sig.seek(0)
    delta.delta(sig, io.BytesIO(new), d)
    d.seek(0)
    delta.patch(io.BytesIO(old), d, out)
    assert out.getvalue() == new


@settings(max_examples=30, deadline=None)
@given(
    shared=st.binary(min_size=1, max_size=5000),
    head=st.binary(max_size=500),
    tail=st.binary(max_size=500),
)
def test_shared_content_is_not_sent_again(shared: bytes, head: bytes, tail: bytes) -> None:
    old = shared * 20
    new = head + old + tail
    sig, d, out = io.BytesIO(), io.BytesIO(), io.BytesIO()
    delta.signature(io.BytesIO(old), sig, block_len=64)
    sig.seek(0)
    delta.delta(sig, io.BytesIO(new), d)
    assert len(d.getvalue()) < len(new) // 2 + 1200
    d.seek(0)
    delta.patch(io.BytesIO(old), d, out)
    assert out.getvalue() == new


def test_corrupt_and_truncated_inputs_are_clear_errors() -> None:
    old, new = random.Random(9).randbytes(50_000), random.Random(10).randbytes(50_000)
    sig, d = io.BytesIO(), io.BytesIO()
    delta.signature(io.BytesIO(old), sig)
    sig.seek(0)
    delta.delta(sig, io.BytesIO(old[:1000] + new), d)
    good_sig, good_delta = sig.getvalue(), d.getvalue()
    with pytest.raises(tether.DeltaError, match="magic"):
        delta.patch(io.BytesIO(old), io.BytesIO(b"not a delta at all"), io.BytesIO())
    with pytest.raises(tether.DeltaError, match="ended early"):
        delta.patch(io.BytesIO(old), io.BytesIO(good_delta[: len(good_delta) // 2]), io.BytesIO())
    with pytest.raises(tether.DeltaError):
        delta.delta(io.BytesIO(good_sig[:7]), io.BytesIO(new), io.BytesIO())
    with pytest.raises(tether.DeltaError, match=r"corrupt|magic"):
        delta.delta(io.BytesIO(good_delta), io.BytesIO(new), io.BytesIO())
    with pytest.raises(ValueError, match="signature kind"):
        delta.signature(io.BytesIO(old), io.BytesIO(), hash="sha1")  # type: ignore[arg-type]
