"""An untrusted release bundle, verified and unpacked in two steps.

``open_bundle`` reads the first two members, which must be the manifest (``release.json``, at
most ``MAX_MANIFEST_BYTES``) and its signature (``release.sig``), parses the manifest strictly
and verifies the signature, both halves, against the one trusted release key. Only then does
the caller look at the manifest (architecture, version) and call ``VerifiedBundle.unpack``,
which streams every further member into a folder: each must be the next file the signed
manifest lists, in order, with exactly its size (checked on the header before its data is
read), and its sha256 must match; nothing may follow the last one.

Guarantees: everything read from the file is bounded (``MAX_BUNDLE_BYTES`` plus headers); no
member is written anywhere before the signature holds; a member is written only under a name
the signed manifest lists (``bundle_manifest.FILE_NAME``: no traversal, no links), created new
(``O_EXCL``, ``O_NOFOLLOW``) with mode 0644; ``unpack`` returns only when every file is there
and matches, else raises ``UpdateRefused`` and the caller discards the folder. The bundle file
itself must be a regular file (``guards.files.open_regular_file``).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from guards.files import open_regular_file
from guards.log_text import printable
from lfr.release.bundle_manifest import (
    MANIFEST_NAME,
    MAX_BUNDLE_BYTES,
    MAX_FILES,
    MAX_MANIFEST_BYTES,
    SIGNATURE_NAME,
    ReleaseManifest,
    decode_manifest,
    verify_manifest_signature,
)
from lfr.release.bundle_tar import BLOCK, RECORD, BundleTarReader, MemberHeader
from lfr.release.refusal import RefusalReason, UpdateRefused
from secure.hybrid_signature import HYBRID_SIGNATURE_BYTES
from secure.node_keys import NodePublicKeys

MAX_READ_BYTES = (MAX_BUNDLE_BYTES + MAX_MANIFEST_BYTES + HYBRID_SIGNATURE_BYTES
                  + (MAX_FILES + 2) * 2 * BLOCK + 2 * RECORD)
"""Most bytes read from a bundle: every member at its limit, each with a header and padding,
and the end of the archive."""


class VerifiedBundle:
    """A bundle whose manifest is signed by the trusted key; its files are not unpacked yet."""

    def __init__(self, reader: BundleTarReader, manifest: ReleaseManifest,
                 manifest_bytes: bytes) -> None:
        self._reader = reader
        self._unpacked = False
        self.manifest = manifest
        """The verified manifest."""
        self.manifest_bytes = manifest_bytes
        """Its exact signed bytes (installed as ``release.json``)."""

    def unpack(self, folder: Path) -> None:
        """Write every file of the manifest under ``folder`` (an empty folder the caller owns),
        each checked against its signed size and sha256; ``UpdateRefused`` at the first file
        missing, out of order, of another size or hash, or at a member the manifest does not
        list."""
        if self._unpacked:
            raise RuntimeError("a bundle is unpacked once")
        self._unpacked = True
        for entry in self.manifest.files:
            header = self._reader.next_member()
            if header is None:
                raise _corrupt(f"file {printable(entry.path)} is missing (the bundle ends "
                               "before it)")
            if header.name != entry.path:
                raise _corrupt(f"member {printable(header.name)} where the signed manifest "
                               f"lists {printable(entry.path)} (files missing, extra or "
                               "reordered)")
            if header.size != entry.size:
                raise _corrupt(f"file {printable(entry.path)} has {header.size} bytes, the "
                               f"signed manifest says {entry.size}")
            digest = self._write(folder, header)
            if not hmac.compare_digest(digest, entry.sha256):
                raise _corrupt(f"file {printable(entry.path)} has sha256 {digest}, the signed "
                               f"manifest says {entry.sha256} (altered or damaged)")
        extra = self._reader.next_member()
        if extra is not None:
            raise _corrupt(f"member {printable(extra.name)} follows the last file the signed "
                           "manifest lists")

    def _write(self, folder: Path, header: MemberHeader) -> str:
        target = folder / header.name  # a manifest name (FILE_NAME): no '..', not absolute
        target.parent.mkdir(mode=0o755, exist_ok=True)
        hasher = hashlib.sha256()
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                     | os.O_CLOEXEC, 0o644)
        with os.fdopen(fd, "wb") as out:
            def sink(chunk: bytes) -> None:
                hasher.update(chunk)
                out.write(chunk)

            self._reader.copy_to(header, sink)
            out.flush()
            os.fsync(out.fileno())
        return hasher.hexdigest()


@contextmanager
def open_bundle(path: Path, trusted: NodePublicKeys) -> Iterator[VerifiedBundle]:
    """Open the bundle at ``path`` and verify its manifest's signature by ``trusted`` (module
    docstring); the file stays open until the block ends."""
    fd = open_regular_file(path, "release bundle")
    with os.fdopen(fd, "rb", buffering=BLOCK * 128) as stream:
        size = os.fstat(stream.fileno()).st_size
        if size > MAX_READ_BYTES:
            raise UpdateRefused(RefusalReason.OVERSIZE,
                                f"release bundle {printable(path)} has {size} bytes, over the "
                                f"limit of {MAX_READ_BYTES}")
        yield _verify_header(stream, trusted)


def _verify_header(stream: BinaryIO, trusted: NodePublicKeys) -> VerifiedBundle:
    reader = BundleTarReader(stream, max_bytes=MAX_READ_BYTES)
    manifest_bytes = _expect(reader, MANIFEST_NAME, MAX_MANIFEST_BYTES)
    signature = _expect(reader, SIGNATURE_NAME, HYBRID_SIGNATURE_BYTES)
    manifest = decode_manifest(manifest_bytes)
    verify_manifest_signature(manifest, manifest_bytes, signature, trusted)
    return VerifiedBundle(reader, manifest, manifest_bytes)


def _expect(reader: BundleTarReader, name: str, max_bytes: int) -> bytes:
    header = reader.next_member()
    if header is None or header.name != name:
        found = "the end" if header is None else f"member {printable(header.name)}"
        raise UpdateRefused(RefusalReason.MALFORMED,
                            f"not a valid release bundle: {found} where {name} must be")
    return reader.read_small(header, max_bytes)


def _corrupt(problem: str) -> UpdateRefused:
    return UpdateRefused(RefusalReason.FILE_CORRUPT, f"release bundle: {problem}")
