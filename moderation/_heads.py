"""Signed tree head messages and their checks, light enough to import in worker processes.

`moderation.log` re-exports everything here; `verify_log` sends batches of heads to
`bad_signatures` on other processes when a log is long.
"""

from __future__ import annotations

import base64
import json
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

FORMAT_VERSION = 1

# What json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False) does,
# without building a new encoder for every call: the standard library's C encoder made once
# (JSONEncoder.encode makes one per call), where the interpreter has it. Values are flat
# dicts of strings, integers and None, so it skips the circular-reference bookkeeping.
_CANONICAL_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
_C_ENCODER = (
    c_make_encoder(
        None, _CANONICAL_ENCODER.default, encode_basestring, None, ":", ",", True, False, True
    )
    if c_make_encoder is not None
    else None
)

# A head to check: (its position in the log's heads, size, root, signed_at text, signature hex).
HeadToCheck = tuple[int, int, bytes | None, str, str]


def canonical_json(values: dict[str, Any]) -> str:
    if _C_ENCODER is None:
        return _CANONICAL_ENCODER.encode(values)
    return "".join(_C_ENCODER(values, 0))


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


def bad_signatures(
    public_key: bytes, heads: list[HeadToCheck], seed: bytes | None = None
) -> list[int]:
    """The positions of the heads whose signature does not verify with `public_key`.

    With the signing key's `seed` (the site checking its own log), a head whose stored
    signature is exactly the one the key makes for it needs no verifying: Ed25519 signing is
    deterministic (RFC 8032), and signing costs a third of verifying. Any other signature is
    verified as usual, so the answer is the same either way.
    """
    # libsodium (PyNaCl) rather than OpenSSL here: the same Ed25519, but verifying is about
    # 2.5 times faster, and a long log has one signed head per entry to check.
    try:
        key = VerifyKey(public_key)
        signing = SigningKey(seed) if seed is not None else None
    except (ValueError, TypeError):
        return [head[0] for head in heads]
    if signing is not None and bytes(signing.verify_key) != public_key:
        signing = None
    bad = []
    for position, size, root, signed_at, signature_hex in heads:
        try:
            if root is None:
                raise ValueError("unreadable root")
            signature = bytes.fromhex(signature_hex)
            if len(signature) != 64:
                raise ValueError("not an Ed25519 signature")
            message = head_message(size, root, signed_at)
            if signing is not None and signing.sign(message).signature == signature:
                continue
            key.verify(message, signature)
        except (BadSignatureError, ValueError, TypeError):
            bad.append(position)
    return bad
