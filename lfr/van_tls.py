"""``lfr van tls-init --id ID --out DIR``: the van's self-signed TLS certificate and its pin.

Writes ``tls.crt`` (0644) and ``tls.key`` (0600) into ``DIR`` (created 0700 if missing; its
parent must exist) with ``actors.van.tls_certificate.create_tls_certificate``, never overwriting
either file, and prints the certificate's sha256 fingerprint together with the line each unit's
``unit.toml`` needs under ``[van]``. Nothing private is printed.
"""

from __future__ import annotations

import stat
from pathlib import Path

from actors.van.tls_certificate import (
    CERTIFICATE_FILE,
    KEY_FILE,
    TlsCertificateError,
    create_tls_certificate,
    format_fingerprint,
)
from guards.exit_codes import ExitCode
from guards.log_text import printable
from secure.node_keys import check_node_id


def tls_init(van_id: str, out: Path) -> int:
    """Make the van's certificate in ``out``; prints where, the pin and the unit.toml line."""
    check_node_id(van_id, "--id")  # before anything is written
    _prepare_folder(out)
    files = create_tls_certificate(out, van_id)
    pin = format_fingerprint(files.fingerprint)
    print(f"van {printable(van_id)}: self-signed TLS certificate (ECDSA P-256, TLS 1.3)")
    print(f"  wrote {printable(files.certificate)}  (certificate, 0644)")
    print(f"  wrote {printable(files.key)}  (private key, mode 0600: keep it on the van)")
    print(f"  TLS sha256 {pin}")
    print("put this line under [van] in each unit's unit.toml:")
    print(f'tls_fingerprint = "{pin}"')
    return ExitCode.OK


def _prepare_folder(out: Path) -> None:
    """``out`` as an existing folder (made 0700 when missing), refused naming it otherwise."""
    shown = f"--out {printable(out)}"
    try:
        mode = out.lstat().st_mode
    except FileNotFoundError:
        try:
            out.mkdir(mode=0o700)
        except FileNotFoundError:
            raise TlsCertificateError(f"{shown}: its parent folder does not exist") from None
        except OSError as exc:
            raise TlsCertificateError(f"{shown}: {exc.strerror or exc}") from None
        return
    except OSError as exc:
        raise TlsCertificateError(f"{shown}: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(mode):
        raise TlsCertificateError(f"{shown}: not a folder; {CERTIFICATE_FILE} and {KEY_FILE} "
                                  "are written into a folder")
