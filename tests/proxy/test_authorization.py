"""What a token may reach: the certificates_only scope and the target's base path."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from tests.support.accounts import make_token, proxy_headers
from tests.support.proxy import error_of
from tests.support.raw_targets import NormalisingTarget


async def test_certificates_only_reaches_certificates(gateway, database):
    issued = await make_token(database, scope="certificates_only")
    response = await gateway.get("/api/v1/proxy/certificates/a.pem", headers=proxy_headers(issued.token))
    assert response.status == 200


async def test_certificates_only_is_denied_elsewhere(gateway, database):
    issued = await make_token(database, scope="certificates_only")
    for path in ("/api/v1/proxy/echo/x", "/api/v1/proxy/", "/api/v1/proxy/certificates",
                 "/api/v1/proxy/certificates/%2E%2E/echo/x"):
        response = await gateway.get(path, headers=proxy_headers(issued.token))
        assert response.status == 403, path
        assert (await error_of(response))["code"] == "scope_denied"


async def test_ambiguous_paths_are_denied_to_certificates_only(gateway, database):
    issued = await make_token(database, scope="certificates_only")
    for path in ("/api/v1/proxy/certificates/..;/echo/x", "/api/v1/proxy/certificates/..%5cecho",
                 "/api/v1/proxy/certificates/%252e%252e/echo", "/api/v1/proxy/certificates//x"):
        response = await gateway.get(path, headers=proxy_headers(issued.token))
        assert response.status == 403, path


# The target's base path is a boundary (attack 2026-12-01, M1): with TOLLGATE_TARGET_URL=http://host/app,
# a full-scope token sent `..` and its encodings verbatim and an nginx-like target served /internal.


@pytest.fixture
async def normalising_target(aiohttp_server) -> tuple[NormalisingTarget, str]:
    target = NormalisingTarget()
    server = await aiohttp_server(target.app())
    return target, str(server.make_url("/app"))


async def raw_get(port: int, raw_target: str, headers: dict[str, str]) -> tuple[int, bytes]:
    """A GET whose request-target goes out exactly as written (no client resolves its dot segments)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    writer.write(f"GET {raw_target} HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n{head}\r\n".encode())
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head_bytes, _, body = answer.partition(b"\r\n\r\n")
    return int(head_bytes.split()[1]), body


ESCAPES = ["/../internal/secret", "/%2e%2e/internal/x", "/%2E%2e/internal/x", "/.%2e/internal/x",
           "/..%2finternal/x", "/a/..%2F..%2Finternal/x", "/a%2f..%2f..%2finternal", "/x/./../../internal",
           "/..\\internal/x", "/..%5cinternal/x", "/a%5C..%5C..%5Cinternal", "/..;/internal/x",
           "/%2e%2e;jsessionid=1/internal/x", "/..", "/%2e", "/."]


@pytest.mark.parametrize("escape", ESCAPES)
async def test_no_path_leaves_the_targets_base_path(gateway_factory, database, normalising_target, escape):
    target, target_url = normalising_target
    gateway = await gateway_factory(target_url=target_url)
    issued = await make_token(database)
    status, body = await raw_get(gateway.port, "/api/v1/proxy" + escape, proxy_headers(issued.token))
    assert (status, orjson.loads(body)["error"]["code"], target.raw_paths) == (400, "bad_path", [])


async def test_an_escape_is_refused_on_the_extra_mount_too(gateway_factory, database, normalising_target):
    target, target_url = normalising_target
    gateway = await gateway_factory(target_url=target_url, target_prefix="/zenzefi")
    issued = await make_token(database)
    status, _ = await raw_get(gateway.port, "/zenzefi/%2e%2e/internal/x", proxy_headers(issued.token))
    assert (status, target.raw_paths) == (400, [])


async def test_legitimate_dots_and_escapes_still_pass_raw(gateway_factory, database, normalising_target):
    target, target_url = normalising_target
    gateway = await gateway_factory(target_url=target_url)
    issued = await make_token(database)
    raw = "/a%20b/%7Euser/..x/.hidden/x%3By/%2e%2ex?q=%2e%2e/../&r=%2F"
    status, body = await raw_get(gateway.port, "/api/v1/proxy" + raw, proxy_headers(issued.token))
    assert (status, body.split()[0], target.raw_paths) == (200, b"app", ["/app" + raw])
