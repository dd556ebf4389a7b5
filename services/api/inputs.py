"""Reading event posts and slate paths: capped bodies, dead-letter keys, UTF-8 paths."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import urllib.parse
from typing import Any

import pydantic_core
from fastapi import Request
from fastapi.exceptions import RequestValidationError

from schemas.events import ID_PATTERN, MAX_ID_LENGTH

__all__ = [
    "DECLARED_TOO_LARGE_WAIT_SECONDS",
    "dead_letter_key",
    "read_capped",
    "require_utf8_path",
]

# How long a body whose Content-Length is over the limit is read before its
# 413. An estimate: long enough for a body that is really sent by a client on
# the same network to arrive, so that its dead letter keeps the first bytes.
DECLARED_TOO_LARGE_WAIT_SECONDS = 0.5

_VALID_ID = re.compile(ID_PATTERN)


async def read_capped(request: Request, limit: int) -> tuple[bytes, str | None]:
    """Return the body, or its first ``limit`` bytes and its size when longer.

    A longer body is not read to its end, so a huge upload costs no memory.
    The size is the declared ``Content-Length`` when there is one. A body
    whose declared length is already over ``limit`` is read only for
    ``DECLARED_TOO_LARGE_WAIT_SECONDS``: a client that sends less than it
    declared would otherwise hold the request until the body timeout. The
    bytes returned are then those that arrived in that time, up to ``limit``.
    """
    declared = request.headers.get("content-length", "")
    # isdigit alone accepts characters such as "²", which int() rejects.
    is_declared = declared.isascii() and declared.isdigit()
    chunks: list[bytes] = []
    if is_declared and int(declared) > limit:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                _read_over(request, limit, chunks), DECLARED_TOO_LARGE_WAIT_SECONDS
            )
        return b"".join(chunks)[:limit], f"{declared} bytes"
    if await _read_over(request, limit, chunks):
        size = f"{declared} bytes" if is_declared else f"more than {limit} bytes"
        return b"".join(chunks)[:limit], size
    return b"".join(chunks), None


async def _read_over(request: Request, limit: int, chunks: list[bytes]) -> bool:
    """Append the body's chunks to ``chunks``; return True once over ``limit``."""
    received = 0
    async for chunk in request.stream():
        chunks.append(chunk)
        received += len(chunk)
        if received > limit:
            return True
    return False


def dead_letter_key(raw: bytes) -> bytes | None:
    """Return a rejected body's ``user_id`` as its dead letter's key, or None.

    The key is UTF-8 encoded, as on the valid path, so a user's dead letters
    share a partition as the user's events do. The body failed validation, so
    a key is returned only when it is a JSON object whose ``user_id`` is a
    string of 1 to ``MAX_ID_LENGTH`` characters without control characters
    and not of whitespace only, the event schema's id rule.
    Any other body gives None, malformed or deeply nested JSON included.
    """
    try:
        # pydantic-core parses JSON as validation does, so it rejects the same
        # documents (lone surrogates included) and its strings encode to UTF-8.
        document = pydantic_core.from_json(raw)
    except ValueError:
        return None
    user_id = document.get("user_id") if isinstance(document, dict) else None
    if not isinstance(user_id, str) or not 1 <= len(user_id) <= MAX_ID_LENGTH:
        return None
    if not _VALID_ID.fullmatch(user_id):
        return None
    if _user_id_count(raw) != 1:
        # A repeated user_id names no user: parsers disagree on which counts.
        return None
    return user_id.encode()


def require_utf8_path(request: Request, user_id: str) -> None:
    """Reject a path whose percent-escapes do not decode as UTF-8.

    The server decodes such escapes into U+FFFD, so ``/v1/users/a%ff`` would
    otherwise read the slates of a user whose id really is ``a\ufffd``.
    """
    raw_path = request.scope.get("raw_path")
    if not isinstance(raw_path, bytes):
        return
    try:
        urllib.parse.unquote_to_bytes(raw_path).decode("utf-8")
    except UnicodeDecodeError:
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": ("path", "user_id"),
                    "msg": "the path's percent-escapes are not UTF-8: encode the "
                    "user id as UTF-8 before percent-encoding it",
                    "input": user_id,
                }
            ]
        ) from None


def _user_id_count(raw: bytes) -> int:
    """Return how often the top-level object of a JSON document has a user_id key."""
    counts: list[int] = []

    def count(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        counts.append(sum(1 for key, _ in pairs if key == "user_id"))
        return dict(pairs)

    try:
        json.loads(raw, object_pairs_hook=count)
    except (ValueError, RecursionError):
        return 0
    # json calls the hook for nested objects first and the top-level one last.
    return counts[-1] if counts else 0
