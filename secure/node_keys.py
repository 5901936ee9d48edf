"""A node's identity: its role, its id and its key pairs (``NodeKeys``), and what it shows
others (``NodePublicKeys``).

Which keys each role holds, and why:

- **unit**: a signing key only. A unit signs what it sends and seals it to the van; it never
  decrypts anything, so its disk holds nothing that opens an envelope (a stolen unit reads
  none of its own alerts, sent or queued).
- **van**: a signing key (it signs its signalling answers and acknowledgements) and an
  encryption key (units seal their events to it).
- **authority**: a signing key only (it signs watchlists; a later issue).
- **release**: a signing key only. It signs release bundles (``lfr release build``); a unit
  installs a bundle only when this key's signature verifies (``lfr update apply``). It never
  lives on a unit or a van.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from guards.log_text import printable
from guards.user_input import UserInputError
from runtime.link_keys import valid_peer_name
from secure.hybrid_signature import SigningKeyPair, VerifyKey
from secure.key_id import format_key_id
from secure.sealing import EncryptionKeyPair, EncryptionPublicKey

MAX_NODE_ID_CHARS = 64
"""Node ids are link peer names too (``runtime.link_keys.valid_peer_name``)."""
MAX_NODE_ID_BYTES = 255
"""An id's UTF-8 form is written behind a one-byte length in envelope headers."""


class NodeRole(enum.Enum):
    """What a node is; decides which keys it holds."""

    UNIT = "unit"
    VAN = "van"
    AUTHORITY = "authority"
    RELEASE = "release"

    @property
    def has_encryption_key(self) -> bool:
        """Only a van receives sealed messages."""
        return self is NodeRole.VAN


class NodeIdError(UserInputError):
    """A node id is empty, too long, or holds characters that cannot be printed."""


def check_node_id(node_id: str, what: str = "node id") -> str:
    """``node_id`` if it is 1-64 printable characters (not ``*``, not only spaces) of at most
    255 UTF-8 bytes; else ``NodeIdError`` naming ``what``."""
    if not valid_peer_name(node_id):
        raise NodeIdError(f"{what} {printable(node_id, max_chars=80)} must be 1 to "
                          f"{MAX_NODE_ID_CHARS} printable characters, not '*' or only spaces")
    if len(node_id.encode("utf-8", "surrogatepass")) > MAX_NODE_ID_BYTES:
        raise NodeIdError(f"{what} {printable(node_id)} is over {MAX_NODE_ID_BYTES} bytes "
                          "in UTF-8")
    return node_id


@dataclass(frozen=True, slots=True)
class NodePublicKeys:
    """What a node gives others: enrolment at the van, a unit's config naming its van."""

    role: NodeRole
    """The node's role."""
    node_id: str
    """The node's id (``check_node_id``)."""
    verify_key: VerifyKey
    """Checks the node's hybrid signatures."""
    encryption_key: EncryptionPublicKey | None
    """What others seal to; present exactly when the role has one (vans)."""

    def __post_init__(self) -> None:
        check_node_id(self.node_id)
        if (self.encryption_key is not None) != self.role.has_encryption_key:
            raise UserInputError(f"a {self.role.value} node "
                                 f"{'has' if self.role.has_encryption_key else 'has no'} "
                                 "encryption key")

    def describe(self) -> str:
        """One printable line: role, id and key ids."""
        line = (f"{self.role.value} {printable(self.node_id)}: signing key "
                f"{format_key_id(self.verify_key.key_id)}")
        if self.encryption_key is not None:
            line += f", encryption key {format_key_id(self.encryption_key.key_id)}"
        return line


class NodeKeys:
    """A node's private keys and identity; ``repr`` shows role, id and key ids only."""

    __slots__ = ("encryption", "node_id", "role", "signing")

    def __init__(self, role: NodeRole, node_id: str, signing: SigningKeyPair,
                 encryption: EncryptionKeyPair | None) -> None:
        """Refuses (``UserInputError``) an id that is not valid, or an encryption key where
        the role has none (or none where it needs one)."""
        check_node_id(node_id)
        if (encryption is not None) != role.has_encryption_key:
            raise UserInputError(f"a {role.value} node "
                                 f"{'needs' if role.has_encryption_key else 'has no'} "
                                 "encryption key")
        self.role = role
        """The node's role."""
        self.node_id = node_id
        """The node's id."""
        self.signing = signing
        """Its signing key pair."""
        self.encryption = encryption
        """Its encryption key pair (vans only)."""

    @classmethod
    def generate(cls, role: NodeRole, node_id: str) -> NodeKeys:
        """New random keys for a node of ``role``."""
        check_node_id(node_id)
        encryption = EncryptionKeyPair.generate() if role.has_encryption_key else None
        return cls(role, node_id, SigningKeyPair.generate(), encryption)

    def public(self) -> NodePublicKeys:
        """What this node gives others."""
        return NodePublicKeys(self.role, self.node_id, self.signing.verify_key,
                              None if self.encryption is None else self.encryption.public_key)

    def __repr__(self) -> str:
        return f"NodeKeys({self.public().describe()})"
