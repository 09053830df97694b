"""JSON request bodies: control characters, nesting, encodings, size caps and slow senders are clear 4xx."""

from __future__ import annotations

import gzip
import resource
import zlib

import orjson
import pytest

from gateway.accounts import users
from tests.support.accounts import ADMIN, register
from tests.support.api import REGISTER, error_of, row_counts
from tests.support.bodies import deflate, dribble

# Hostile input on the JSON API is a 4xx in the documented shape and writes nothing
# (ATTACK-2026-12-01 M6: NUL and control characters, nesting, forms; decision 0014).


BUNDLE = {"name": "Pack", "description": "x", "token_count": 2, "duration_hours": 24, "price": "30"}
NUL, BELL, ESCAPE = "\u0000", "\u0007", "\u001b"

# (who, method, path, body): every string a handler stores as text, with a control character in it.
HOSTILE_BODIES = [
    (None, "POST", "/api/v1/auth/register", {**REGISTER, "email": f"a{NUL}b@example.com"}),
    (None, "POST", "/api/v1/auth/register", {**REGISTER, "username": f"nul{NUL}01"}),
    (None, "POST", "/api/v1/auth/register", {**REGISTER, "full_name": f"Nul{NUL}Name"}),
    (None, "POST", "/api/v1/auth/register", {**REGISTER, "full_name": f"Bell{BELL}Name"}),
    (None, "POST", "/api/v1/auth/register", {**REGISTER, "password": f"long enough{NUL}pw"}),
    (None, "POST", "/api/v1/auth/register", {**REGISTER, "referral_code": f"ABC{NUL}"}),
    (None, "POST", "/api/v1/auth/login", {"email": f"a{NUL}@example.com", "password": "x"}),
    (None, "POST", "/api/v1/auth/login", {"email": "client@example.com", "password": f"x{NUL}"}),
    (None, "POST", "/api/v1/auth/magic-link", {"email": f"client{NUL}@example.com"}),
    (None, "POST", "/api/v1/auth/refresh", {"refresh_token": f"a{NUL}b"}),
    (None, "POST", "/api/v1/auth/magic-link/verify", {"token": f"a{NUL}b"}),
    ("client", "POST", "/api/v1/keys", {"name": f"key{NUL}"}),
    ("client", "POST", "/api/v1/keys", {"name": f"key{ESCAPE}[31m"}),
    ("client", "POST", "/api/v1/keys", {"allowed_models": [f"gpt-4o{NUL}"]}),
    ("client", "POST", "/api/v1/keys", {"ip_allowlist": [f"127.0.0.1{NUL}"]}),
    ("client", "POST", "/api/v1/tokens/purchase", {"duration_hours": 1, "scope": f"full{NUL}"}),
    ("admin", "POST", "/api/v1/admin/users/{client_id}/adjust", {"credits": "5", "reason": f"gift{NUL}"}),
    ("admin", "POST", "/api/v1/admin/users/{client_id}/adjust", {"credits": f"5{NUL}", "reason": "gift"}),
    ("admin", "POST", "/api/v1/admin/bundles", {**BUNDLE, "name": f"Pack{NUL}"}),
    ("admin", "POST", "/api/v1/admin/bundles", {**BUNDLE, "description": f"about{NUL}"}),
    ("admin", "PATCH", "/api/v1/admin/bundles/1", {"name": f"Renamed{NUL}"}),
    ("admin", "POST", "/api/v1/admin/tokens", {"email": f"client{NUL}@example.com", "hours": 1}),
    ("admin", "PUT", "/api/v1/admin/prices/gpt-4o", {"input_per_mtok": "1", "output_per_mtok": "2",
                                                     "cached_input_per_mtok": "1", "provider": f"openai{NUL}"}),
]


@pytest.mark.parametrize("who, method, path, body", HOSTILE_BODIES)
async def test_control_characters_in_json_strings_are_400_and_write_nothing(gateway, database, people,
                                                                            who, method, path, body):
    before = await row_counts(database)
    response = await gateway.request(method, path.format(client_id=people["client_id"]),
                                     headers=people[who], data=orjson.dumps(body))
    assert await error_of(response, 400) in ("invalid_field", "invalid_provider")
    assert await row_counts(database) == before


async def test_tabs_and_line_breaks_stay_allowed_where_text_may_have_them(gateway, database, people):
    response = await gateway.post(f"/api/v1/admin/users/{people['client_id']}/adjust", headers=people["admin"],
                                  json={"credits": "5", "reason": "refund for\n\tticket 17"})
    assert response.status == 201, await response.text()


async def test_a_deeply_nested_list_is_refused_as_a_field_not_a_crash(gateway, database, people):
    nested = b"[" * 900 + b'"gpt-4o"' + b"]" * 900  # within orjson's 1024 levels, past Python's recursion
    response = await gateway.post("/api/v1/keys", headers=people["client"],
                                  data=b'{"allowed_models": ' + nested + b"}")
    assert await error_of(response, 400) == "invalid_field"


@pytest.mark.parametrize("path", ["/api/v1/tokens/1%00", "/api/v1/admin/users/1%00", "/api/v1/bundles/1%00"])
async def test_nul_in_path_ids_is_404(gateway, database, people, path):
    method = "DELETE" if path.startswith("/api/v1/tokens") else "GET"
    who = "admin" if "admin" in path else "client"
    response = await gateway.request(method, path, headers=people[who])
    assert response.status == 404


@pytest.mark.parametrize("body", [b"token=\x80\xad", b"token=%ff%fe", b"\xff=\xfe", b"token=a&" * 40])
async def test_a_magic_link_form_that_is_not_ascii_or_too_long_is_a_400(gateway, database, body):
    """Found by the fuzz (tests/test_fuzz.py): request.post() decoded the form as UTF-8 and crashed."""
    response = await gateway.post("/api/v1/auth/magic-link/verify", data=body,
                                  headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "invalid_form"


# The JSON API: inflated here, with the cap on what comes out


async def test_the_json_api_reads_a_gzip_body(gateway, database):
    await register(gateway, "zip@example.com", password="correct horse battery")
    body = gzip.compress(orjson.dumps({"email": "zip@example.com", "password": "correct horse battery"}))
    response = await gateway.post("/api/v1/auth/login", data=body, headers={
        "Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert response.status == 200
    assert "access_token" in await response.json()


async def test_the_json_api_reads_a_deflate_body(gateway, database):
    body = deflate(orjson.dumps({"email": "nobody@example.com", "password": "wrong password here"}))
    response = await gateway.post("/api/v1/auth/login", data=body, headers={
        "Content-Type": "application/json", "Content-Encoding": "deflate"})
    assert response.status == 401


@pytest.mark.parametrize("path", ["/api/v1/auth/login", "/api/v1/auth/register", "/api/v1/auth/refresh",
                                  "/api/v1/auth/magic-link"])
@pytest.mark.parametrize("coding, body", [
    ("gzip", b"garbage"),
    ("deflate", b"garbage"),
    ("gzip", gzip.compress(b'{"email": "a@example.com"}')[:-6]),  # cut short
    ("gzip", gzip.compress(b'{"email": "a@example.com"}') + b"trailing"),
], ids=["gzip-garbage", "deflate-garbage", "gzip-cut-short", "gzip-trailing-bytes"])
async def test_a_corrupt_encoded_body_is_a_400(gateway, database, path, coding, body):
    response = await gateway.post(path, data=body, headers={
        "Content-Type": "application/json", "Content-Encoding": coding})
    assert response.status == 400
    error = (await response.json())["error"]
    assert (error["code"], error["request_id"]) == ("invalid_content_encoding", response.headers["X-Request-Id"])


@pytest.mark.parametrize("coding", ["br", "compress", "zstd", "gzip, gzip", "rot13"])
async def test_an_encoding_the_gateway_cannot_read_is_a_415(gateway, database, coding):
    response = await gateway.post("/api/v1/auth/login", data=b"{}", headers={
        "Content-Type": "application/json", "Content-Encoding": coding})
    assert response.status == 415
    assert (await response.json())["error"]["code"] == "unsupported_content_encoding"


async def test_a_deflate_bomb_is_a_413_without_inflating_it(gateway, database):
    compressor = zlib.compressobj(9)
    zeros = bytes(1024 * 1024)
    bomb = b"".join(compressor.compress(zeros) for _ in range(1024)) + compressor.flush()  # 1 GiB inflated
    before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    response = await gateway.post("/api/v1/auth/login", data=bomb, headers={
        "Content-Type": "application/json", "Content-Encoding": "deflate"})
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before_kib
    assert response.status == 413
    assert (await response.json())["error"]["code"] == "payload_too_large"
    assert grown_kib < 100 * 1024


# A body the gateway reads itself has a deadline (review of the M7 fix: a head deadline alone let a
# body sent a byte every few seconds hold its connection, unauthenticated, for days)


async def test_a_json_body_sent_a_byte_at_a_time_is_a_408_not_an_open_connection(gateway_factory, database):
    gateway = await gateway_factory(request_body_timeout_s=0.5)
    body = orjson.dumps({"email": "nobody@example.com", "password": "x" * 200})
    answer = await dribble(gateway.port, "/api/v1/auth/login", {"Content-Type": "application/json"}, body, 4)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    error = orjson.loads(answer.partition(b"\r\n\r\n")[2])["error"]
    assert error["code"] == "request_timeout" and error["request_id"]


async def test_a_json_body_split_across_chunks_is_read_whole(gateway, database):
    await users.ensure_admin(database, email=ADMIN["email"], password=ADMIN["password"])
    import orjson

    raw = orjson.dumps(ADMIN)

    async def pieces():
        yield raw[:10]
        yield raw[10:]

    response = await gateway.post("/api/v1/auth/login", data=pieces(),
                                  headers={"Content-Type": "application/json"})
    assert response.status == 200
