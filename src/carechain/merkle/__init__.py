"""RFC 9162 Merkle trees: hashing, proof verification, an append-only tree, checkpoints.

* ``rfc6962``: leaf and node hashing (RFC 9162 §2.1.1) and naive reference algorithms.
* ``proof``: inclusion and consistency proof verification (RFC 9162 §2.1.3.2, §2.1.4.2).
* ``tree``: the append-only tree over stored complete-subtree nodes, and proof generation.
* ``checkpoint``: C2SP tlog-checkpoint bodies in C2SP signed notes.

This package is part of the deterministic core: no clock, randomness, I/O or frameworks.
"""

from carechain.merkle.checkpoint import (
    MAX_NOTE_SIZE,
    Checkpoint,
    NoteVerifier,
    note_key_id,
    open_checkpoint,
    open_note,
    sign_checkpoint,
    sign_note,
)
from carechain.merkle.proof import root_from_inclusion, verify_consistency, verify_inclusion
from carechain.merkle.rfc6962 import EMPTY_ROOT, HASH_SIZE, leaf_hash, node_hash
from carechain.merkle.tree import (
    CompactTree,
    MemoryNodes,
    NodeReader,
    consistency_proof,
    consistency_proof_and_roots,
    inclusion_proof,
    inclusion_proof_and_root,
    root_at,
)

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MAX_NOTE_SIZE",
    "Checkpoint",
    "CompactTree",
    "MemoryNodes",
    "NodeReader",
    "NoteVerifier",
    "consistency_proof",
    "consistency_proof_and_roots",
    "inclusion_proof",
    "inclusion_proof_and_root",
    "leaf_hash",
    "node_hash",
    "note_key_id",
    "open_checkpoint",
    "open_note",
    "root_at",
    "root_from_inclusion",
    "sign_checkpoint",
    "sign_note",
    "verify_consistency",
    "verify_inclusion",
]
