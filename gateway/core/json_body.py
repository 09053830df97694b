"""JSON request bodies: read with a size cap, parse with orjson, validate fields with clear 400s."""

from __future__ import annotations

import asyncio
import re
import urllib.parse
import zlib
from typing import Any

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from gateway.core.errors import BadRequest, PayloadTooLarge, RequestTimeout, UnsupportedMediaType
from gateway.core.app_keys import SETTINGS

READ_CHUNK_BYTES = 64 * 1024
# The codings a body may arrive in -> zlib's window bits for their framing. The server hands
# bodies over as sent (app.request_handler_args); brotli and zstd need libraries tollgate does
# not ship, so they are refused with 415 like any other coding.
INFLATABLE = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
# C0 controls but tab, line feed and carriage return, and DEL: no field of ours needs them, and
# PostgreSQL cannot store NUL in text (asyncpg raised, which became a 500). Decision 0014.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# No field nests deeper; orjson parses up to 1024 levels, deeper than Python's recursion allows.
NESTING_MAX = 32
FORM_FIELDS_MAX = 16


async def read_bytes(request: web.Request, limit_bytes: int) -> bytes:
    """The whole body, inflated from its Content-Encoding, refused with 413 as soon as it passes
    the limit: declared, as sent, or inflated (a small deflate bomb never grows past the limit)."""
    decoder = _decoder_for(request)
    if request.content_length is not None and request.content_length > limit_bytes:
        raise PayloadTooLarge(f"request body exceeds {limit_bytes} bytes")
    content = request.content
    if decoder is None and content.is_eof():
        # The common case: a small body that came whole with the head. Taken as it is, with no
        # deadline (nothing left to wait for), no loop and no copy.
        try:
            whole = content.read_nowait()
        except RequestPayloadError as error:
            raise BadRequest("the request body could not be read", code="invalid_body") from error
        if len(whole) > limit_bytes:
            raise PayloadTooLarge(f"request body exceeds {limit_bytes} bytes")
        return whole if type(whole) is bytes else bytes(whole)
    body = bytearray()
    sent_bytes = 0
    timeout_s = request.app[SETTINGS].request_body_timeout_s
    try:
        # A deadline for the whole body, not for each piece: a body sent a byte every few seconds
        # would otherwise hold its connection for days (M7's slow-body variant).
        async with asyncio.timeout(timeout_s):
            async for chunk in content.iter_chunked(READ_CHUNK_BYTES):
                sent_bytes += len(chunk)
                if decoder is not None:
                    chunk = _inflate(decoder, chunk, limit_bytes - len(body))
                body += chunk
                if len(body) > limit_bytes or sent_bytes > limit_bytes:
                    raise PayloadTooLarge(f"request body exceeds {limit_bytes} bytes")
    except RequestPayloadError as error:  # broken chunked framing, a client gone mid-body
        raise BadRequest("the request body could not be read", code="invalid_body") from error
    except TimeoutError as error:
        raise RequestTimeout(f"the request body did not arrive within {timeout_s:g} s") from error
    if decoder is not None:
        _check_complete(decoder)
    return bytes(body)


def _decoder_for(request: web.Request) -> zlib._Decompress | None:
    sent = request.headers.getall("content-encoding", None)
    if sent is None:  # the common case: no coding named
        return None
    names = ",".join(sent).split(",")
    codings = [name.strip().lower() for name in names if name.strip().lower() not in ("", "identity")]
    if not codings:
        return None
    if len(codings) > 1 or codings[0] not in INFLATABLE:
        raise UnsupportedMediaType("Content-Encoding must be gzip, deflate or identity",
                                   code="unsupported_content_encoding")
    return zlib.decompressobj(INFLATABLE[codings[0]])


def _inflate(decoder: zlib._Decompress, data: bytes, room_bytes: int) -> bytes:
    """Inflate at most room_bytes + 1 bytes: one more than fits is enough to refuse the body."""
    try:
        inflated = decoder.decompress(data, room_bytes + 1)
    except zlib.error as error:
        raise BadRequest("the request body is not valid for its Content-Encoding",
                         code="invalid_content_encoding") from error
    if len(inflated) > room_bytes:
        raise PayloadTooLarge("request body exceeds the limit once inflated")
    return inflated


def _check_complete(decoder: zlib._Decompress) -> None:
    if not decoder.eof or decoder.unused_data:
        raise BadRequest("the request body is cut short or has bytes after its end",
                         code="invalid_content_encoding")


def parse_object(raw: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise BadRequest("body is not valid JSON", code="invalid_json") from error
    if not isinstance(value, dict):
        raise BadRequest("body must be a JSON object", code="invalid_json")
    return value


async def read_form(request: web.Request, limit_bytes: int | None = None) -> dict[str, str]:
    """An application/x-www-form-urlencoded body (the magic-link page's button), read like a JSON
    one: size-capped, inflated, and a 400 — not a decoding crash — when it is not ASCII."""
    raw = await read_bytes(request, limit_bytes or request.app[SETTINGS].json_body_max_bytes)
    try:
        pairs = urllib.parse.parse_qsl(raw.decode("ascii"), keep_blank_values=True, strict_parsing=False,
                                       errors="strict", max_num_fields=FORM_FIELDS_MAX)
    except (UnicodeDecodeError, ValueError) as error:
        raise BadRequest("body is not a valid form", code="invalid_form") from error
    return dict(pairs)


async def read_object(request: web.Request, limit_bytes: int | None = None) -> dict[str, Any]:
    """A JSON object body of at most `limit_bytes` (default: TOLLGATE_JSON_BODY_MAX_BYTES)."""
    return parse_object(await read_bytes(request, limit_bytes or request.app[SETTINGS].json_body_max_bytes))


def field(body: dict[str, Any], name: str, kind: type | tuple[type, ...], *, required: bool = True,
          default: Any = None) -> Any:
    if name not in body or body[name] is None:
        if required:
            raise BadRequest(f"missing field {name!r}", code="missing_field")
        return default
    value = body[name]
    # bool is an int in Python; never accept true/false where a number is asked for.
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise BadRequest(f"field {name!r} has the wrong type", code="invalid_field")
    if not isinstance(value, kind):
        raise BadRequest(f"field {name!r} has the wrong type", code="invalid_field")
    if not _plain_text(value, NESTING_MAX):
        raise BadRequest(f"field {name!r} contains a control character or is nested too deeply",
                         code="invalid_field")
    return value


def _plain_text(value: Any, depth_left: int) -> bool:
    """No string inside (list items, object keys and values too) carries a control character."""
    if isinstance(value, str):
        return CONTROL_CHARACTERS.search(value) is None
    if isinstance(value, (list, dict)):
        if depth_left == 0:
            return False
        items = value.items() if isinstance(value, dict) else ((item, None) for item in value)
        return all(_plain_text(key, depth_left - 1) and _plain_text(item, depth_left - 1)
                   for key, item in items)
    return True


BIGINT_MAX = 2**63 - 1


def database_id(value: object) -> int | None:
    """An id as PostgreSQL can hold it (bigint, positive); None for anything else, which no row has."""
    if isinstance(value, bool):
        return None
    try:
        number = int(value)  # type: ignore[call-overload]  # anything int() accepts; the rest is no id
    except (TypeError, ValueError):
        return None
    return number if 0 < number <= BIGINT_MAX else None


def json_response(value: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(value), status=status, content_type="application/json")
