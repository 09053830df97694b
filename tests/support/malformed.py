"""Requests aiohttp's HTTP parser refuses: broken request lines, headers and framing on every surface
(the JSON API, the desktop proxy, the AI routes), sent as raw bytes. Each must get the documented
JSON 400, echo nothing, and cost one short warning without a traceback."""

from __future__ import annotations

MALFORMED = [
    b"FOO / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX-Bad: a\x00b\r\n\r\n",
    b"GET / HTTP/1.1\nHost: x\n\n",
    b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"GET /\x7f HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1, 2\r\n\r\n",
    # issue 14: framing and heads refused on the proxy and AI surfaces too, and heads past the size limits
    b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
    b"POST /openai/v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n",
    b"POST /api/v1/proxy/upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\nzz\r\n",
    b"POST /anthropic/v1/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked, x\r\n\r\n0\r\n\r\n",
    b"GET /api/v1/proxy/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /gemini/v1beta/models/\x00:generateContent HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 70_000 + b"\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n  continued\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost: x\r\nX-Space : a\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost: x\r\n: no name\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost: x\r\nX-\xff: a\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 32 + b"\r\n\r\n",  # a TLS hello on plain HTTP
]
