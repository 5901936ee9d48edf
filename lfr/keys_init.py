"""``lfr keys init``: a node's new key pairs written to a folder; prints paths and key ids.

Private key files are mode 0600 and never overwritten; nothing private is printed or logged
(docs/SECURITY.md).
"""

from __future__ import annotations

from pathlib import Path

from guards.exit_codes import ExitCode
from guards.log_text import printable
from secure.key_files import write_node_keys
from secure.key_id import format_key_id
from secure.node_keys import NodeKeys, NodeRole, check_node_id


def keys_init(role: NodeRole, node_id: str, out_dir: Path) -> int:
    """Generate and write the keys of a ``role`` node called ``node_id`` into ``out_dir``."""
    check_node_id(node_id, "--id")  # before any key is made
    keys = NodeKeys.generate(role, node_id)
    paths = write_node_keys(keys, out_dir)
    public = keys.public()
    print(f"{role.value} {printable(node_id)}")
    print(f"  signing key id     {format_key_id(public.verify_key.key_id)}"
          "  (Ed25519 + ML-DSA-65)")
    if public.encryption_key is not None:
        print(f"  encryption key id  {format_key_id(public.encryption_key.key_id)}"
              "  (HPKE ML-KEM-768 + X25519)")
    print(f"  wrote {printable(paths.signing)}  (private, mode 0600: keep it on this node)")
    if paths.encryption is not None:
        print(f"  wrote {printable(paths.encryption)}  (private, mode 0600: keep it on this "
              "node)")
    print(f"  wrote {printable(paths.public)}  (public: give it to {_PUBLIC_GOES_TO[role]})")
    return ExitCode.OK


_PUBLIC_GOES_TO: dict[NodeRole, str] = {
    NodeRole.UNIT: "the van (lfr van enroll-unit)",
    NodeRole.VAN: "its units (van.public_keys in unit.toml)",
    NodeRole.AUTHORITY: "the van and its units ([authority] public_keys)",
    NodeRole.RELEASE: "the units (/etc/lfr-edge/release.keys, docs/RELEASES.md)",
}
"""Where each role's public keys file goes, as the command says after writing it."""
