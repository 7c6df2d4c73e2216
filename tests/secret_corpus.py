"""A corpus of planted secrets and a scanner for every byte a store or a remote holds.

Helpers for ``tests/test_secrets.py`` (pytest does not collect this module). Secrets are made
at run time (random values; keys by ``ssh-keygen`` and ``openssl``), never written in source.
Each planted secret has *needles*: the secret and distinctive fragments of it (the body lines
of a key, the random middle of a token), so a secret cut in a title or re-encoded in part is
found as well as a whole one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import random
import string
import subprocess
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import zstandard

from agtrace.eventlog import segment

ALNUM = string.ascii_letters + string.digits


@dataclass
class Planted:
    name: str
    where: str
    value: str
    needles: list[str]


@dataclass
class Corpus:
    rng: random.Random
    planted: list[Planted] = field(default_factory=list)

    def word(self, n: int, alphabet: str = ALNUM) -> str:
        while True:  # a digit and a letter in every fragment, so no fragment is an ordinary word
            out = "".join(self.rng.choice(alphabet) for _ in range(n))
            if any(c.isdigit() for c in out) and any(c.isalpha() for c in out):
                return out

    def plant(self, name: str, where: str, value: str, needles: list[str] | None = None) -> str:
        core = needles if needles is not None else _fragments(value)
        self.planted.append(Planted(name, where, value, [value, *core]))
        return value

    def token(self, name: str, where: str, prefix: str, n: int, alphabet: str = ALNUM) -> str:
        core = self.word(n, alphabet)
        return self.plant(name, where, prefix + core, _fragments(core))

    def password(self, name: str, where: str) -> str:
        return self.token(name, where, "", 18, ALNUM + "-_")

    def jwt(self, name: str, where: str) -> str:
        header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        payload = _b64url(json.dumps({"sub": self.word(12), "iat": self.rng.randrange(10**9)}).encode())
        sig = _b64url(hmac.new(self.word(16).encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest())
        return self.plant(name, where, f"{header}.{payload}.{sig}", [payload, sig])

    def ssh_key(self, name: str, where: str, tmp: Path) -> str:
        path = tmp / f"key-{len(self.planted)}"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "corpus", "-f", str(path)], check=True)
        return self._pem(name, where, path.read_text())

    def rsa_key(self, name: str, where: str) -> str:
        out = subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"],
                             capture_output=True, text=True, check=True).stdout
        return self._pem(name, where, out)

    def _pem(self, name: str, where: str, text: str) -> str:
        body = [line for line in text.splitlines() if line and not line.startswith("-----")]
        return self.plant(name, where, text, [line for line in body if len(line) >= 24])

    def report(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.planted:
            out[p.where] = out.get(p.where, 0) + 1
        return out


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _fragments(core: str) -> list[str]:
    """The start and the end of a random core (a cut secret keeps one of them)."""
    return [core[:10], core[-10:]] if len(core) >= 16 else []


# -- scanning --------------------------------------------------------------------------------


def _git(*args: str, cwd: Path | None = None, input: bytes | None = None) -> bytes:
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
    return subprocess.run(["git", *args], cwd=cwd, input=input, capture_output=True, check=True, env=env).stdout


def git_objects(git_dir: Path) -> bytes:
    """Every object of a repository, uncompressed (loose objects and packs alike)."""
    return _git("--git-dir", str(git_dir), "cat-file", "--batch-all-objects", "--batch")


def bundle_objects(bundle: Path) -> bytes:
    with tempfile.TemporaryDirectory(prefix="corpus-bundle-") as tmp:
        _git("init", "-q", "--bare", tmp)
        _git("--git-dir", tmp, "bundle", "unbundle", str(bundle))
        return git_objects(Path(tmp))


def views(path: Path) -> Iterator[tuple[str, bytes]]:
    """The bytes of a file, and every decoding of them a secret could hide in."""
    data = path.read_bytes()
    yield str(path), data
    if path.suffix == ".seg":
        for info, batch in segment.iter_frames(data):
            yield f"{path}@{info.offset}", batch
    if data[:4] == b"\x28\xb5\x2f\xfd":
        yield f"{path}(zstd)", zstandard.ZstdDecompressor().decompressobj().decompress(data)
    if data[:2] == b"\x1f\x8b":
        yield f"{path}(gzip)", zlib.decompress(data, 31)
    if path.suffix == ".bundle" or data.startswith(b"# v2 git bundle") or data.startswith(b"# v3 git bundle"):
        yield f"{path}(objects)", bundle_objects(path)


def tree_views(root: Path) -> Iterator[tuple[str, bytes]]:
    """Every file under ``root`` (its views) and the objects of every git repository in it."""
    for path in sorted(root.rglob("*")):
        if path.is_file():
            yield from views(path)
        elif path.is_dir() and (path / "objects").is_dir() and (path / "HEAD").is_file():
            yield f"{path}(objects)", git_objects(path)


def leaks(corpus: Corpus, sources: Iterator[tuple[str, bytes]]) -> tuple[dict[str, list[str]], int, int]:
    """``{secret name: [where it was found]}``, and how many views and bytes were scanned."""
    found: dict[str, list[str]] = {}
    count = size = 0
    needles = [(p.name, n.encode()) for p in corpus.planted for n in p.needles if n]
    for label, data in sources:
        count += 1
        size += len(data)
        for name, needle in needles:
            if needle in data:
                found.setdefault(name, []).append(label)
    return found, count, size
