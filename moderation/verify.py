"""Check an Agora site's moderation log from outside, through its public API only.

    python -m moderation.verify https://agora.example.org [--head saved.json] [--save new.json]

It fetches the latest signed tree head and checks its Ed25519 signature against the site's
published key; downloads every entry, recomputes each leaf hash from the exact canonical text
(and checks that text says what the entry's fields say); recomputes the Merkle root and
compares it with the signed head. Given a head saved earlier, it checks that head's signature
and asks the site for a consistency proof that today's log extends it, and checks the same
thing from the downloaded entries, so a log that was rewritten or cut short since, even with
freshly signed heads, is caught. `--save` stores the current head for the next run (only when
everything checked out).

Exit status: 0 the log checks out, 1 tampered or inconsistent, 2 unreachable or bad input.
Nothing here touches a database: the data comes over HTTP (httpx).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from moderation import merkle
from moderation.log import CANONICAL_FIELDS, FORMAT_VERSION, canonical_json, verify_head_signature

PAGE = 1000
OK, TAMPERED, ERROR = "ok", "tampered", "error"
EXIT_CODES = {OK: 0, TAMPERED: 1, ERROR: 2}


class Unusable(Exception):
    """The site could not be reached, or answered with something that is not the log API."""


@dataclass(slots=True)
class Report:
    status: str = OK
    size: int = 0
    head: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]

    def problem(self, message: str) -> None:
        self.problems.append(message)
        if self.status == OK:
            self.status = TAMPERED

    def verdict(self) -> str:
        if self.status == ERROR:
            return f"CANNOT VERIFY: {self.error}"
        if self.status == TAMPERED:
            return (
                f"TAMPERED OR INCONSISTENT: {len(self.problems)} problem(s) in a log of "
                f"{self.size} entries"
            )
        return f"OK: all {self.size} entries check out against the signed head"

    def lines(self) -> list[str]:
        out = [self.verdict()]
        out.extend(f"  - {problem}" for problem in self.problems)
        out.extend(f"  * {note}" for note in self.notes)
        return out


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"{what} is not a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what} is not valid base64") from None


@dataclass(frozen=True, slots=True)
class Head:
    size: int
    root: bytes
    signed_at: str
    signature: bytes
    public_key: bytes
    raw: dict[str, Any]

    @classmethod
    def parse(cls, data: Any, what: str) -> Head:
        """ValueError naming what is wrong when `data` is not a tree head."""
        if not isinstance(data, dict):
            raise ValueError(f"{what} is not a JSON object")
        size = data.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ValueError(f"{what} has no valid size")
        signed_at = data.get("signed_at")
        if not isinstance(signed_at, str):
            raise ValueError(f"{what} has no signed_at")
        return cls(
            size=size,
            root=_b64(data.get("root"), f"{what}'s root"),
            signed_at=signed_at,
            signature=_b64(data.get("signature"), f"{what}'s signature"),
            public_key=_b64(data.get("public_key"), f"{what}'s public key"),
            raw=data,
        )

    def signature_ok(self, key: bytes) -> bool:
        return verify_head_signature(key, self.size, self.root, self.signed_at, self.signature)


async def _get(
    client: httpx.AsyncClient, path: str, params: dict[str, Any] | None = None
) -> httpx.Response:
    try:
        return await client.get(path, params=params)
    except httpx.HTTPError as exc:
        raise Unusable(f"cannot reach {client.base_url}{path}: {exc}") from None


def _json(response: httpx.Response, what: str) -> Any:
    if response.status_code != 200:
        raise Unusable(f"{what}: the site answered HTTP {response.status_code}")
    try:
        return response.json()
    except ValueError:
        raise Unusable(f"{what}: the site's answer is not JSON") from None


async def _fetch_head(client: httpx.AsyncClient) -> Head | None:
    response = await _get(client, "/api/v1/log/head")
    if response.status_code == 404:
        return None
    try:
        return Head.parse(_json(response, "the latest head"), "the site's head")
    except ValueError as exc:
        raise Unusable(str(exc)) from None


async def _fetch_entries(client: httpx.AsyncClient, start: int) -> list[dict[str, Any]]:
    """Every entry from `start` on, page by page."""
    entries: list[dict[str, Any]] = []
    while True:
        data = _json(
            await _get(client, "/api/v1/log/entries", {"start": start, "limit": PAGE}),
            "the entries",
        )
        page = data.get("entries") if isinstance(data, dict) else None
        if not isinstance(page, list) or not all(isinstance(e, dict) for e in page):
            raise Unusable("the entries: the site's answer has no list of entries")
        entries.extend(page)
        next_start = data.get("next_start")
        if not page or next_start is None:
            return entries
        if not isinstance(next_start, int) or next_start <= start:
            raise Unusable("the entries: the site's paging does not move forward")
        start = next_start


def _check_entry(position: int, entry: dict[str, Any], report: Report) -> bytes | None:
    """The leaf hash recomputed from the canonical text; problems go into the report."""
    label = f"entry at position {position}"
    canonical = entry.get("canonical")
    if not isinstance(canonical, str):
        report.problem(f"{label}: has no canonical text")
        return None
    leaf = merkle.leaf_hash(canonical.encode("utf-8"))
    if entry.get("seq") != position:
        report.problem(
            f"{label} has sequence number {entry.get('seq')!r} "
            "(an entry was deleted, inserted or reordered)"
        )
    if entry.get("leaf_hash") != leaf.hex():
        report.problem(f"{label}: its published leaf hash is not the hash of its canonical text")
    try:
        fields = json.loads(canonical)
    except ValueError:
        report.problem(f"{label}: its canonical text is not JSON")
        return leaf
    if not isinstance(fields, dict) or set(fields) != {"v", *CANONICAL_FIELDS}:
        report.problem(f"{label}: its canonical text does not have the entry fields")
        return leaf
    if fields["v"] != FORMAT_VERSION:
        report.problem(f"{label}: unknown canonical format version {fields['v']!r}")
    if canonical_json(fields) != canonical:
        report.problem(f"{label}: its canonical text is not in canonical form")
    if fields.get("seq") != position:
        report.problem(f"{label}: was hashed as entry {fields.get('seq')!r}")
    differing = [name for name in CANONICAL_FIELDS if entry.get(name) != fields[name]]
    if differing:
        report.problem(
            f"{label}: its shown fields differ from what was hashed ({', '.join(differing)}): "
            "the stored entry was changed after it was logged"
        )
    return leaf


async def _check_inclusion(
    client: httpx.AsyncClient, seq: int, head: Head, leaf: bytes, report: Report
) -> None:
    response = await _get(client, "/api/v1/log/proof/inclusion", {"seq": seq, "size": head.size})
    if response.status_code != 200:
        report.problem(
            f"the site cannot prove entry {seq} is in its signed head (HTTP {response.status_code})"
        )
        return
    try:
        data = response.json()
        proof = [_b64(p, "a proof hash") for p in data["proof"]]
        merkle.verify_inclusion(leaf, seq, head.size, proof, head.root)
    except (ValueError, KeyError, TypeError, merkle.ProofError) as exc:
        report.problem(f"the inclusion proof of entry {seq} does not verify: {exc}")


async def _check_saved(
    client: httpx.AsyncClient,
    saved: Head,
    head: Head | None,
    key: bytes,
    leaves: list[bytes],
    report: Report,
) -> None:
    if saved.public_key != key:
        report.problem("the saved head was signed with a different key than the site's")
    if not saved.signature_ok(saved.public_key):
        report.problem("the saved head's signature does not verify (it is not a real head)")
    current_size = head.size if head else 0
    if saved.size > current_size:
        report.problem(
            f"the log shrank: the saved head covers {saved.size} entries, the site's latest "
            f"head only {current_size} (the log was truncated or rewritten)"
        )
        return
    if head is None or saved.size == 0:
        return
    # From the downloaded entries themselves...
    if len(leaves) >= saved.size and merkle.root_from_leaf_hashes(leaves[: saved.size]) != (
        saved.root
    ):
        report.problem(
            f"the first {saved.size} entries no longer hash to the saved head's root "
            "(they were changed, reordered or replaced since it was saved)"
        )
    # ...and from the site's own proof.
    if saved.size == head.size:
        if saved.root != head.root:
            report.problem(f"two signed heads of size {head.size} have different roots (a fork)")
        return
    response = await _get(
        client, "/api/v1/log/proof/consistency", {"first": saved.size, "second": head.size}
    )
    if response.status_code != 200:
        report.problem(
            f"the site cannot prove its log of {head.size} entries extends the saved one of "
            f"{saved.size} (HTTP {response.status_code})"
        )
        return
    try:
        data = response.json()
        proof = [_b64(p, "a proof hash") for p in data["proof"]]
        merkle.verify_consistency(saved.size, head.size, proof, saved.root, head.root)
    except (ValueError, KeyError, TypeError, merkle.ProofError) as exc:
        report.problem(
            f"the consistency proof from the saved head ({saved.size} entries) to the current "
            f"one ({head.size}) does not verify: {exc}"
        )
    else:
        report.notes.append(
            f"the log of {head.size} entries is a consistent extension of the saved head of "
            f"{saved.size}"
        )


async def verify_site(client: httpx.AsyncClient, saved_head: dict[str, Any] | None) -> Report:
    """Check the site `client` points at (base_url set), optionally against a saved head."""
    report = Report()
    try:
        saved = Head.parse(saved_head, "the saved head") if saved_head is not None else None
    except ValueError as exc:
        report.status, report.error = ERROR, str(exc)
        return report
    try:
        await _verify(client, saved, report)
    except Unusable as exc:
        report.status, report.error = ERROR, str(exc)
    return report


async def _verify(client: httpx.AsyncClient, saved: Head | None, report: Report) -> None:
    key_data = _json(await _get(client, "/api/v1/log/public-key"), "the public key")
    try:
        key = _b64(
            key_data.get("public_key") if isinstance(key_data, dict) else None,
            "the site's public key",
        )
    except ValueError as exc:
        raise Unusable(str(exc)) from None
    head = await _fetch_head(client)
    entries = await _fetch_entries(client, 0)
    if head is not None and len(entries) > head.size:
        # Entries appended while we read come with their own heads: look again once.
        newer = await _fetch_head(client)
        if newer is not None and newer.size > head.size:
            head = newer
            if len(entries) < head.size:
                entries.extend(await _fetch_entries(client, len(entries)))
    report.head = head.raw if head else None
    report.size = head.size if head else 0

    if head is not None:
        if head.public_key != key:
            report.problem("the head names a different public key than the site publishes")
        if not head.signature_ok(key):
            report.problem(f"the signature of the head at size {head.size} does not verify")
    size = report.size
    if len(entries) > size:
        report.problem(
            f"{len(entries) - size} entr{'y is' if len(entries) - size == 1 else 'ies are'} "
            f"stored beyond the signed head of {size} (inserted without a signed head)"
        )
    if len(entries) < size:
        report.problem(f"the signed head covers {size} entries but only {len(entries)} are served")
    leaves: list[bytes] = []
    for position, entry in enumerate(entries[:size]):
        leaf = _check_entry(position, entry, report)
        leaves.append(leaf if leaf is not None else b"\0" * merkle.HASH_SIZE)
    if head is not None and len(leaves) == size:
        if merkle.root_from_leaf_hashes(leaves) != head.root:
            report.problem(
                f"the {size} entries do not hash to the signed root (entries were changed, "
                "reordered, removed or inserted)"
            )
        else:
            for seq in sorted({0, size - 1}):
                await _check_inclusion(client, seq, head, leaves[seq], report)
    if saved is not None:
        await _check_saved(client, saved, head, key, leaves, report)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m moderation.verify",
        description="Check an Agora site's public moderation log from outside.",
    )
    parser.add_argument("url", help="the site's address, e.g. https://agora.example.org")
    parser.add_argument("--head", type=Path, help="a tree head saved earlier (JSON)")
    parser.add_argument("--save", type=Path, help="where to save the current head when OK")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    args = parser.parse_args(argv)
    saved = None
    if args.head is not None:
        try:
            saved = json.loads(args.head.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            print(f"CANNOT VERIFY: cannot read the saved head {args.head}: {exc}")
            return EXIT_CODES[ERROR]
    if not args.url.startswith(("http://", "https://")):
        print(f"CANNOT VERIFY: {args.url!r} is not an http(s) address")
        return EXIT_CODES[ERROR]

    async def run() -> Report:
        async with httpx.AsyncClient(base_url=args.url.rstrip("/"), timeout=args.timeout) as c:
            return await verify_site(c, saved)

    report = asyncio.run(run())
    for line in report.lines():
        print(line)
    if args.save is not None:
        if report.ok and report.head is not None:
            args.save.write_text(
                json.dumps(report.head, indent=2, sort_keys=True) + "\n", encoding="utf-8"
            )
            print(f"Saved the head of size {report.size} to {args.save}.")
        else:
            print("Not saving a head: the log did not check out.")
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
