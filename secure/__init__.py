"""``secure``: keys, hybrid signatures, HPKE sealing and the sealed event envelope.

Layering: ``secure`` sits above ``guards`` and ``runtime`` (it imports them: user input
errors, file reading, the strict codec for key files) and below ``actors`` and ``lfr``,
which use it; it imports nothing from them. Primitives come from ``cryptography`` only: no
home-made cryptography, no RSA, no pickle.

- ``key_id``           - the short sha256 name of a public key
- ``hybrid_signature`` - Ed25519 + ML-DSA-65 signatures that must both verify
- ``sealing``          - HPKE to a van's key (ML-KEM-768 + X25519, HKDF-SHA256, ChaCha20-Poly1305)
- ``node_keys``        - a node's role, id and key pairs (unit, van, authority)
- ``key_files``        - private key files (0600, never overwritten) and the public-keys file
- ``envelope``         - the sealed, signed event envelope and the order ``open_envelope`` checks

docs/SECURITY.md describes the formats byte by byte and the reasons.
"""
