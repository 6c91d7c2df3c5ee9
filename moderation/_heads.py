"""Signed tree head messages and their checks, light enough to import in worker processes.

`moderation.log` re-exports everything here; `verify_log` sends batches of heads to
`bad_signatures` on other processes when a log is long.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

FORMAT_VERSION = 1

# What json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False) does,
# without building a new encoder for every call.
_CANONICAL_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)

# A head to check: (its position in the log's heads, size, root, signed_at text, signature hex).
HeadToCheck = tuple[int, int, bytes | None, str, str]


def canonical_json(values: dict[str, Any]) -> str:
    return _CANONICAL_ENCODER.encode(values)


def head_message(size: int, root: bytes, signed_at: str) -> bytes:
    """The bytes a tree head signature covers."""
    return canonical_json(
        {
            "log": "agora-moderation",
            "root": base64.b64encode(root).decode(),
            "signed_at": signed_at,
            "size": size,
            "v": FORMAT_VERSION,
        }
    ).encode()


def bad_signatures(public_key: bytes, heads: list[HeadToCheck]) -> list[int]:
    """The positions of the heads whose signature does not verify with `public_key`."""
    # libsodium (PyNaCl) rather than OpenSSL here: the same Ed25519, but verifying is about
    # 2.5 times faster, and a long log has one signed head per entry to check.
    try:
        key = VerifyKey(public_key)
    except (ValueError, TypeError):
        return [head[0] for head in heads]
    bad = []
    for position, size, root, signed_at, signature_hex in heads:
        try:
            if root is None:
                raise ValueError("unreadable root")
            signature = bytes.fromhex(signature_hex)
            if len(signature) != 64:
                raise ValueError("not an Ed25519 signature")
            key.verify(head_message(size, root, signed_at), signature)
        except (BadSignatureError, ValueError, TypeError):
            bad.append(position)
    return bad
