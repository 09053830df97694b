"""Exports streamed row by row: CSV (cells a spreadsheet would run as formulas are quoted) and JSON
Lines. Rows come from an async iterator (a server-side cursor) and leave in chunks of a few hundred,
so an export of any length is held in memory a chunk at a time. The admin UI's ledger export and the
JSON API's usage exports both write through here."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Mapping, Sequence

import orjson
from aiohttp import web

# Rows written per chunk of the answer (a chunk is a few tens of kilobytes, never the whole file).
ROWS_PER_CHUNK = 500
# A spreadsheet would run a cell starting with these as a formula: such text is quoted with a '.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
FORMATS = ("csv", "jsonl")
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/jsonl; charset=utf-8"}


def cell(value: object) -> str:
    """Free text for a CSV cell: a leading formula character is defused."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


async def start(request: web.Request, export_format: str, filename: str,
                headers: Mapping[str, str] | None = None) -> web.StreamResponse:
    """The export's response, prepared (chunked; the status is fixed from here on)."""
    response = web.StreamResponse(headers={
        "Content-Type": CONTENT_TYPES[export_format],
        "Content-Disposition": f'attachment; filename="{filename}.{export_format}"', **(headers or {})})
    response.enable_chunked_encoding()
    await response.prepare(request)
    return response


async def write_csv(response: web.StreamResponse, columns: Sequence[str],
                    rows: AsyncIterator[Sequence[object]]) -> int:
    """The header, then every row as it comes (each a sequence of cell texts); the rows written."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    count = 0
    async for row in rows:
        writer.writerow(row)
        count += 1
        if count % ROWS_PER_CHUNK == 0:
            await response.write(buffer.getvalue().encode())
            buffer.seek(0)
            buffer.truncate()
    await response.write(buffer.getvalue().encode())
    await response.write_eof()
    return count


async def write_jsonl(response: web.StreamResponse, rows: AsyncIterator[Mapping[str, object]]) -> int:
    """One JSON object a line, as each row comes; the rows written."""
    chunk: list[bytes] = []
    count = 0
    async for row in rows:
        chunk.append(orjson.dumps(row))
        count += 1
        if len(chunk) == ROWS_PER_CHUNK:
            await response.write(b"\n".join(chunk) + b"\n")
            chunk.clear()
    if chunk:
        await response.write(b"\n".join(chunk) + b"\n")
    await response.write_eof()
    return count
