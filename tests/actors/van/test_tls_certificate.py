"""The van's self-signed TLS certificate: files, modes, never overwritten, the pin."""

from __future__ import annotations

import hashlib
import os
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from actors.van.tls_certificate import (
    TlsCertificateError,
    certificate_fingerprint,
    create_tls_certificate,
    format_fingerprint,
    parse_fingerprint,
    server_ssl_context,
)
from guards.files import UserFileError


def test_the_certificate_is_self_signed_p256_and_the_key_private(tmp_path: Path) -> None:
    files = create_tls_certificate(tmp_path, "van-1")
    assert stat.S_IMODE(os.stat(files.key).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(files.certificate).st_mode) == 0o644
    certificate = x509.load_pem_x509_certificate(files.certificate.read_bytes())
    assert certificate.issuer == certificate.subject
    assert certificate.subject.rfc4514_string() == "CN=van-1"
    public = certificate.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert public.curve.name == "secp256r1"
    der = certificate.public_bytes(serialization.Encoding.DER)
    assert files.fingerprint == hashlib.sha256(der).digest()
    assert certificate_fingerprint(files.certificate) == files.fingerprint


@pytest.mark.parametrize("existing", ["tls.crt", "tls.key"])
def test_nothing_is_overwritten(tmp_path: Path, existing: str) -> None:
    (tmp_path / existing).write_bytes(b"keep me")
    with pytest.raises(TlsCertificateError, match="never overwritten"):
        create_tls_certificate(tmp_path, "van-1")
    assert (tmp_path / existing).read_bytes() == b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == [existing]


def test_fingerprints_print_and_parse(tmp_path: Path) -> None:
    files = create_tls_certificate(tmp_path, "van-1")
    shown = format_fingerprint(files.fingerprint)
    assert len(shown) == 32 * 3 - 1
    assert parse_fingerprint(shown) == files.fingerprint
    assert parse_fingerprint(files.fingerprint.hex()) == files.fingerprint
    with pytest.raises(ValueError, match="32 bytes"):
        parse_fingerprint("ab:cd")


def test_the_server_context_is_tls13_and_refuses_an_exposed_key(tmp_path: Path) -> None:
    files = create_tls_certificate(tmp_path, "van-1")
    context = server_ssl_context(files.certificate, files.key)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_3
    os.chmod(files.key, 0o644)
    with pytest.raises(UserFileError, match="0600"):
        server_ssl_context(files.certificate, files.key)
