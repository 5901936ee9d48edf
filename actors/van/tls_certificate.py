"""The van's TLS certificate: self-signed, pinned by its sha256 fingerprint in each unit's config.

Units do not trust a certificate authority for their van: a unit's config holds the sha256 of
the van's certificate (DER), and the unit refuses any other certificate, whoever signed it. So
the certificate is self-signed, made here with ``cryptography``: an ECDSA P-256 key (no RSA),
TLS 1.3 only on the server side.

Files: ``tls.crt`` (PEM, 0644) and ``tls.key`` (PEM, PKCS#8, unencrypted, 0600). Neither is ever
overwritten (``O_EXCL | O_NOFOLLOW``; both targets are checked before either is written); the key
is read back only through ``guards.files.read_private_file``'s checks (regular file, ours, 0600).
"""

from __future__ import annotations

import datetime
import hashlib
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from guards.files import UserFileError, read_private_file, read_user_file, write_new_file
from guards.log_text import printable
from secure.node_keys import check_node_id

CERTIFICATE_FILE = "tls.crt"
KEY_FILE = "tls.key"
FINGERPRINT_BYTES = 32
"""A pin is the sha256 of the certificate's DER bytes."""
DEFAULT_VALIDITY_DAYS = 3650
"""Ten years: the pin, not the dates, is what a unit trusts; a new van key means a new pin."""
MAX_PEM_BYTES = 16 * 1024
_KEY_MODE = 0o600
_CERTIFICATE_MODE = 0o644


class TlsCertificateError(UserFileError):
    """A certificate or key file exists already, cannot be written, or is not one."""


@dataclass(frozen=True, slots=True)
class TlsCertificateFiles:
    """Where ``create_tls_certificate`` wrote, and the pin to give units."""

    certificate: Path
    """The certificate, PEM (0644)."""
    key: Path
    """The private key, PEM (0600)."""
    fingerprint: bytes
    """sha256 of the certificate's DER bytes: the value in each unit's config."""


def create_tls_certificate(out_dir: Path | str, van_id: str, *,
                           validity_days: int = DEFAULT_VALIDITY_DAYS) -> TlsCertificateFiles:
    """A new self-signed certificate for the van ``van_id`` in ``out_dir`` (which must exist);
    refuses (``TlsCertificateError``) if either file exists."""
    check_node_id(van_id, "van id")
    folder = Path(out_dir)
    paths = (folder / CERTIFICATE_FILE, folder / KEY_FILE)
    for path in paths:
        if os.path.lexists(path):
            raise TlsCertificateError(f"{printable(path)} already exists; a TLS certificate or "
                                      "key is never overwritten (move it away first)")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, van_id)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # small clock differences
        .not_valid_after(now + datetime.timedelta(days=validity_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    _write_new(paths[1], key_pem, _KEY_MODE)  # the key first: a lone key is harmless
    try:
        _write_new(paths[0], certificate.public_bytes(serialization.Encoding.PEM),
                   _CERTIFICATE_MODE)
    except BaseException:
        paths[1].unlink(missing_ok=True)
        raise
    return TlsCertificateFiles(paths[0], paths[1], certificate_fingerprint(paths[0]))


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """A new file (``guards.files.write_new_file``: never overwritten, exact mode)."""
    try:
        write_new_file(path, data, "TLS file", mode)
    except UserFileError as exc:
        raise TlsCertificateError(str(exc)) from None


def certificate_fingerprint(path: Path | str) -> bytes:
    """sha256 of the DER bytes of the PEM certificate at ``path``."""
    pem = read_user_file(path, "TLS certificate", MAX_PEM_BYTES)
    try:
        certificate = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise TlsCertificateError(f"TLS certificate {printable(path)}: not a PEM "
                                  "certificate") from None
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).digest()


def format_fingerprint(fingerprint: bytes) -> str:
    """``AB:CD:...`` (upper-case hex pairs), the way ``openssl x509 -fingerprint`` shows it."""
    return ":".join(f"{byte:02X}" for byte in fingerprint)


def parse_fingerprint(text: str) -> bytes:
    """The 32 bytes of a fingerprint written as hex, with or without colons; ``ValueError``."""
    digits = text.strip().replace(":", "")
    value = bytes.fromhex(digits)
    if len(value) != FINGERPRINT_BYTES:
        raise ValueError(f"a sha256 fingerprint has {FINGERPRINT_BYTES} bytes, got {len(value)}")
    return value


def server_ssl_context(certificate: Path | str, key: Path | str) -> ssl.SSLContext:
    """A TLS 1.3 server context with the van's certificate; the key file must pass
    ``read_private_file`` (regular, ours, 0600) first."""
    read_private_file(key, "TLS key", MAX_PEM_BYTES)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(certificate, key)
    return context
