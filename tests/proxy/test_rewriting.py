"""Table and property tests for gateway.proxy.rewriting: media types, Location, Set-Cookie and body streams."""

import itertools

import pytest
from hypothesis import given, settings, strategies as st

from gateway.proxy.rewriting import BodyRewriter, UrlMap, is_rewritable, rewrite_location, rewrite_set_cookie

PUBLIC_BASE_URL = "http://127.0.0.1:8080"
MOUNT_PREFIX = "/api/v1/proxy"
PUBLIC_URL = PUBLIC_BASE_URL + MOUNT_PREFIX

BASE_MAP = UrlMap.from_urls("http://127.0.0.1:9000/base/", PUBLIC_BASE_URL, MOUNT_PREFIX)
ROOT_MAP = UrlMap.from_urls("http://127.0.0.1:9000", PUBLIC_BASE_URL, MOUNT_PREFIX)
HTTPS_MAP = UrlMap.from_urls("https://upstream.example/base", PUBLIC_BASE_URL, MOUNT_PREFIX)
NAMED_MAP = UrlMap.from_urls("http://upstream.example:9000/base", PUBLIC_BASE_URL, MOUNT_PREFIX)

# Independent statement of the matching rule, to check the streaming rewriter against.
CONTINUATION_BYTES = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~%:@")


def rewrite_reference(body: bytes, replacements: list[tuple[bytes, bytes]]) -> bytes:
    """Left to right, longest pattern first, skipping a match whose last byte is continued by the next."""
    longest_first = sorted(replacements, key=lambda pair: len(pair[0]), reverse=True)
    output = bytearray()
    position = 0
    while position < len(body):
        for pattern, replacement in longest_first:
            end = position + len(pattern)
            following = body[end:end + 1]
            continued = following and following[0] in CONTINUATION_BYTES and pattern[-1] in CONTINUATION_BYTES
            if body.startswith(pattern, position) and not continued:
                output += replacement
                position = end
                break
        else:
            output.append(body[position])
            position += 1
    return bytes(output)


def rewrite_in_chunks(replacements: list[tuple[bytes, bytes]], chunks: list[bytes]) -> bytes:
    rewriter = BodyRewriter(replacements)
    return b"".join(rewriter.feed(chunk) for chunk in chunks) + rewriter.flush()


def split_at(body: bytes, positions: tuple[int, ...]) -> list[bytes]:
    bounds = (0, *positions, len(body))
    return [body[start:end] for start, end in itertools.pairwise(bounds)]


@pytest.mark.parametrize(("content_type", "expected"), [
    ("text/html", True),
    ("Text/HTML; charset=UTF-8", True),
    ("text/css;charset=utf-8", True),
    ("application/javascript", True),
    ("text/javascript", True),
    ("application/x-javascript", True),
    ("application/xhtml+xml; charset=utf-8", True),
    ("text/xml", True),
    ("application/json", False),
    ("text/plain", False),
    ("text/event-stream", False),
    ("image/png", False),
    ("text/html-sandboxed", False),
    ("", False),
    (None, False),
])
def test_is_rewritable(content_type, expected):
    """Only the listed text media types are rewritable, whatever their parameters or case."""
    assert is_rewritable(content_type) is expected


@pytest.mark.parametrize(("target_url", "mount_prefix", "expected"), [
    ("http://127.0.0.1:9000/base/", "/api/v1/proxy", UrlMap("http://127.0.0.1:9000/base", PUBLIC_URL)),
    ("http://127.0.0.1:9000/", "api/v1/proxy/", UrlMap("http://127.0.0.1:9000", PUBLIC_URL)),
    ("HTTP://Upstream.Example", "/", UrlMap("http://upstream.example", PUBLIC_BASE_URL)),
    ("http://[::1]:9000/x", "/p", UrlMap("http://[::1]:9000/x", PUBLIC_BASE_URL + "/p")),
])
def test_from_urls_normalises(target_url, mount_prefix, expected):
    """Trailing slashes, scheme and host case and the mount prefix's slashes are normalised."""
    assert UrlMap.from_urls(target_url, PUBLIC_BASE_URL + "/", mount_prefix) == expected


@pytest.mark.parametrize("target_url", ["ftp://host/x", "/relative", "http://host/x?query=1", "http://host:port/"])
def test_from_urls_rejects_a_target_that_is_not_an_http_base(target_url):
    """A target that is not an absolute http(s) URL without query is a configuration error."""
    with pytest.raises(ValueError):
        UrlMap.from_urls(target_url, PUBLIC_BASE_URL, MOUNT_PREFIX)


def test_body_replacements_cover_absolute_relative_and_escaped_forms():
    """A target on a non-default port yields four forms, each mapped to the public form of its kind."""
    assert BASE_MAP.body_replacements() == [
        (b"http://127.0.0.1:9000/base", b"http://127.0.0.1:8080/api/v1/proxy"),
        (b"http:\\/\\/127.0.0.1:9000\\/base", b"http:\\/\\/127.0.0.1:8080\\/api\\/v1\\/proxy"),
        (b"//127.0.0.1:9000/base", b"//127.0.0.1:8080/api/v1/proxy"),
        (b"\\/\\/127.0.0.1:9000\\/base", b"\\/\\/127.0.0.1:8080\\/api\\/v1\\/proxy"),
    ]


def test_body_replacements_match_a_default_port_with_and_without_it():
    """A target on its scheme's default port is also matched with the port left out."""
    patterns = {pattern for pattern, _ in HTTPS_MAP.body_replacements()}
    assert {b"https://upstream.example:443/base", b"https://upstream.example/base",
            b"//upstream.example/base", b"https:\\/\\/upstream.example\\/base"} <= patterns


@pytest.mark.parametrize(("url_map", "location", "expected"), [
    (BASE_MAP, "http://127.0.0.1:9000/base/login", PUBLIC_URL + "/login"),
    (BASE_MAP, "http://127.0.0.1:9000/base", PUBLIC_URL),
    (BASE_MAP, "http://127.0.0.1:9000/base/a?x=1&y=%2F#top", PUBLIC_URL + "/a?x=1&y=%2F#top"),
    (BASE_MAP, "http://127.0.0.1:9000/base?x=1", PUBLIC_URL + "?x=1"),
    (BASE_MAP, "HTTP://127.0.0.1:9000/base/x", PUBLIC_URL + "/x"),
    (BASE_MAP, "//127.0.0.1:9000/base/x", "//127.0.0.1:8080/api/v1/proxy/x"),
    (BASE_MAP, "/base/login?next=%2F#form", "/api/v1/proxy/login?next=%2F#form"),
    (BASE_MAP, "/base", "/api/v1/proxy"),
    (BASE_MAP, "/base/", "/api/v1/proxy/"),
    (BASE_MAP, "/basement", "/basement"),
    (BASE_MAP, "/other/page", "/other/page"),
    (BASE_MAP, "http://127.0.0.1:9000/other", "http://127.0.0.1:9000/other"),
    (BASE_MAP, "http://127.0.0.1:9000/basement", "http://127.0.0.1:9000/basement"),
    (BASE_MAP, "http://127.0.0.1:9001/base/x", "http://127.0.0.1:9001/base/x"),
    (BASE_MAP, "https://127.0.0.1:9000/base/x", "https://127.0.0.1:9000/base/x"),
    (BASE_MAP, "http://elsewhere.example/base/x", "http://elsewhere.example/base/x"),
    (BASE_MAP, "http://127.0.0.1:bad/base/x", "http://127.0.0.1:bad/base/x"),
    (BASE_MAP, "x/y", "x/y"),
    (BASE_MAP, "../up", "../up"),
    (BASE_MAP, "?page=2", "?page=2"),
    (ROOT_MAP, "/", "/api/v1/proxy/"),
    (ROOT_MAP, "/x?y=1", "/api/v1/proxy/x?y=1"),
    (ROOT_MAP, "http://127.0.0.1:9000", PUBLIC_URL),
    (ROOT_MAP, "http://127.0.0.1:9000/x", PUBLIC_URL + "/x"),
    (HTTPS_MAP, "https://upstream.example/base/x", PUBLIC_URL + "/x"),
    (HTTPS_MAP, "https://upstream.example:443/base/x", PUBLIC_URL + "/x"),
    (HTTPS_MAP, "https://UPSTREAM.example/base/x", PUBLIC_URL + "/x"),
    (HTTPS_MAP, "http://upstream.example/base/x", "http://upstream.example/base/x"),
    (HTTPS_MAP, "https://upstream.example:8443/base/x", "https://upstream.example:8443/base/x"),
])
def test_rewrite_location(url_map, location, expected):
    """A Location on the target under its base moves to the gateway; any other stays as it is."""
    assert rewrite_location(location, url_map) == expected


def test_rewrite_location_on_a_gateway_mounted_at_root_keeps_paths_absolute():
    """With an empty mount prefix a path equal to the base becomes the root, not an empty string."""
    url_map = UrlMap.from_urls("http://127.0.0.1:9000/base", PUBLIC_BASE_URL, "")
    assert [rewrite_location(value, url_map) for value in ("/base", "/base?x=1")] == ["/", "/?x=1"]


EXPIRES = "Expires=Wed, 21 Oct 2015 07:28:00 GMT"


@pytest.mark.parametrize(("url_map", "set_cookie", "expected"), [
    (NAMED_MAP, "sid=1; Domain=upstream.example; Path=/base", "sid=1; Path=/api/v1/proxy"),
    (NAMED_MAP, "sid=1; domain=.UPSTREAM.example; Path=/base/app", "sid=1; Path=/api/v1/proxy/app"),
    (NAMED_MAP, "sid=1; Path=/base; DOMAIN = upstream.example ", "sid=1; Path=/api/v1/proxy"),
    (NAMED_MAP, "sid=1; Domain=example; Path=/base", "sid=1; Path=/api/v1/proxy"),
    (NAMED_MAP, "sid=1; Domain=other.example; Path=/base", "sid=1; Domain=other.example; Path=/api/v1/proxy"),
    (NAMED_MAP, "sid=1; Domain=stream.example; Path=/base", "sid=1; Domain=stream.example; Path=/api/v1/proxy"),
    (NAMED_MAP, f"sid=1; {EXPIRES}; Path=/base; Secure; HttpOnly; SameSite=Lax",
     f"sid=1; {EXPIRES}; Path=/api/v1/proxy; Secure; HttpOnly; SameSite=Lax"),
    (NAMED_MAP, f"sid=1;{EXPIRES};Max-Age=60;path=/base/x/", f"sid=1;{EXPIRES};Max-Age=60;path=/api/v1/proxy/x/"),
    (NAMED_MAP, "sid=1; Max-Age=60", "sid=1; Max-Age=60; Path=/api/v1/proxy"),
    (NAMED_MAP, "sid=1", "sid=1; Path=/api/v1/proxy"),
    (NAMED_MAP, "sid=1; Path=relative", "sid=1; Path=relative; Path=/api/v1/proxy"),
    (NAMED_MAP, "sid=1; Path=/", "sid=1; Path=/api/v1/proxy"),
    (NAMED_MAP, "sid=1; PATH=/other", "sid=1; PATH=/api/v1/proxy"),
    (NAMED_MAP, "sid=1; Path=/basement", "sid=1; Path=/api/v1/proxy"),
    (NAMED_MAP, "next=Path=/base; Path=/base", "next=Path=/base; Path=/api/v1/proxy"),
    (NAMED_MAP, "token=a=b==; Path=/base/x", "token=a=b==; Path=/api/v1/proxy/x"),
    (ROOT_MAP, "sid=1; Path=/", "sid=1; Path=/api/v1/proxy"),
    (ROOT_MAP, "sid=1; Path=/app", "sid=1; Path=/api/v1/proxy/app"),
    (ROOT_MAP, "sid=1; Domain=127.0.0.1; Path=/", "sid=1; Path=/api/v1/proxy"),
])
def test_rewrite_set_cookie(url_map, set_cookie, expected):
    """Domain naming the target goes, Path moves under the mount, other attributes stay byte-for-byte."""
    assert rewrite_set_cookie(set_cookie, url_map) == expected


def test_rewrite_set_cookie_on_a_gateway_mounted_at_root_uses_the_root_path():
    """With an empty mount prefix the base path maps to `/`."""
    url_map = UrlMap.from_urls("http://upstream.example:9000/base", PUBLIC_BASE_URL, "/")
    assert rewrite_set_cookie("sid=1; Path=/base", url_map) == "sid=1; Path=/"


def test_quoted_cookie_value_with_a_semicolon_is_split_as_the_rfc_says():
    """RFC 6265 splits on every `;`, quotes or not, so a Path inside a quoted value is an attribute."""
    rewritten = rewrite_set_cookie('q="a; Path=/base/x"', NAMED_MAP)
    assert rewritten == 'q="a; Path=/api/v1/proxy/x"'


PAGE = (
    b'<a href="http://127.0.0.1:9000/base/x">x</a>'
    b"<img src='//127.0.0.1:9000/base/i.png'>"
    b'<script>var u = "http:\\/\\/127.0.0.1:9000\\/base\\/api", v = "\\/\\/127.0.0.1:9000\\/base";</script>'
    b"<a href=http://127.0.0.1:9000/base?q=1>q</a> http://127.0.0.1:9000/base"
)
EXPECTED_PAGE = (
    b'<a href="http://127.0.0.1:8080/api/v1/proxy/x">x</a>'
    b"<img src='//127.0.0.1:8080/api/v1/proxy/i.png'>"
    b'<script>var u = "http:\\/\\/127.0.0.1:8080\\/api\\/v1\\/proxy\\/api", '
    b'v = "\\/\\/127.0.0.1:8080\\/api\\/v1\\/proxy";</script>'
    b"<a href=http://127.0.0.1:8080/api/v1/proxy?q=1>q</a> http://127.0.0.1:8080/api/v1/proxy"
)


def replace_longest_first(body: bytes, replacements: list[tuple[bytes, bytes]]) -> bytes:
    """bytes.replace, longest pattern first: the same as one pass when no match is continued."""
    for pattern, replacement in sorted(replacements, key=lambda pair: len(pair[0]), reverse=True):
        body = body.replace(pattern, replacement)
    return body


def test_page_rewritten_in_one_chunk_matches_bytes_replace():
    """A page with every form of the target URL, fed whole, becomes the expected page."""
    replacements = BASE_MAP.body_replacements()
    assert (rewrite_in_chunks(replacements, [PAGE]), replace_longest_first(PAGE, replacements)) == (
        EXPECTED_PAGE, EXPECTED_PAGE)


def test_every_two_chunk_split_of_a_page_matches_one_pass():
    """Splitting the page into two chunks at any position changes nothing in the output."""
    replacements = BASE_MAP.body_replacements()
    outputs = {rewrite_in_chunks(replacements, split_at(PAGE, (cut,))) for cut in range(len(PAGE) + 1)}
    assert outputs == {EXPECTED_PAGE}


def test_every_three_chunk_split_of_a_page_matches_one_pass():
    """Splitting the page into three chunks at any two positions changes nothing in the output."""
    replacements = BASE_MAP.body_replacements()
    cuts = itertools.combinations_with_replacement(range(len(PAGE) + 1), 2)
    outputs = {rewrite_in_chunks(replacements, split_at(PAGE, pair)) for pair in cuts}
    assert outputs == {EXPECTED_PAGE}


PREFIX_PATTERNS = [(b"http://h:9000", b"ORIGIN"), (b"http://h:9000/base", b"BASE")]


@pytest.mark.parametrize(("body", "expected"), [
    (b"http://h:9000/base/x", b"BASE/x"),
    (b"http://h:9000/other", b"ORIGIN/other"),
    (b"http://h:9000/basement", b"ORIGIN/basement"),
    (b"http://h:9000", b"ORIGIN"),
    (b"http://h:90001/base", b"http://h:90001/base"),
    (b"http://h:9000/bas", b"ORIGIN/bas"),
])
def test_longest_pattern_wins_at_every_split(body, expected):
    """Where one pattern is a prefix of another, the longest that matches at a position wins, in any chunking."""
    outputs = {rewrite_in_chunks(PREFIX_PATTERNS, split_at(body, (cut,))) for cut in range(len(body) + 1)}
    assert outputs == {expected}


@pytest.mark.parametrize(("body", "expected"), [
    (b'"http://upstream.example/base"', b'"http://127.0.0.1:8080/api/v1/proxy"'),
    (b'"http://upstream.example.org/base"', b'"http://upstream.example.org/base"'),
    (b'"http://upstream.example:8080/"', b'"http://upstream.example:8080/"'),
    (b'"http://upstream.example/basement"', b'"http://upstream.example/basement"'),
    (b"(http://upstream.example/base)", b"(http://127.0.0.1:8080/api/v1/proxy)"),
])
def test_a_url_continued_past_the_pattern_is_left_alone(body, expected):
    """A pattern followed by a host, port or path-segment byte names another URL and is not replaced."""
    url_map = UrlMap.from_urls("http://upstream.example/base", PUBLIC_BASE_URL, MOUNT_PREFIX)
    assert rewrite_in_chunks(url_map.body_replacements(), [body]) == expected


def test_chunk_ending_away_from_any_pattern_is_emitted_whole():
    """A chunk whose tail cannot begin a pattern comes back in full, with nothing held back."""
    rewriter = BodyRewriter(BASE_MAP.body_replacements())
    assert rewriter.feed(b"<p>see http://127.0.0.1:9000/base/x and more</p>") == (
        b"<p>see http://127.0.0.1:8080/api/v1/proxy/x and more</p>")


def test_chunk_ending_in_part_of_a_pattern_holds_back_only_that_part():
    """Only the suffix that could still become a pattern is held back, and flush returns it."""
    rewriter = BodyRewriter(BASE_MAP.body_replacements())
    assert (rewriter.feed(b"<p>see http://127.0.0"), rewriter.flush()) == (b"<p>see ", b"http://127.0.0")


def test_no_replacements_pass_bytes_through():
    """A rewriter with no patterns returns each chunk as it came."""
    rewriter = BodyRewriter([])
    assert (rewriter.feed(b"abc"), rewriter.feed(b""), rewriter.flush()) == (b"abc", b"", b"")


@pytest.mark.parametrize("replacements", [[(b"", b"x")], [(b"a", b"x"), (b"a", b"y")]])
def test_empty_or_repeated_patterns_are_rejected(replacements):
    """An empty pattern or one pattern given twice is a programming error."""
    with pytest.raises(ValueError):
        BodyRewriter(replacements)


ALPHABET = b"ab/:.x"
patterns = st.lists(st.binary(min_size=1, max_size=6).map(lambda raw: bytes(ALPHABET[b % 6] for b in raw)),
                    min_size=1, max_size=4, unique=True)


@st.composite
def soups(draw):
    """Patterns over a small alphabet, a body mixing them with noise, and random chunk boundaries."""
    chosen = draw(patterns)
    replacements = [(pattern, b"<%d>" % index) for index, pattern in enumerate(chosen)]
    noise = st.binary(max_size=4).map(lambda raw: bytes(ALPHABET[b % 6] for b in raw))
    pieces = draw(st.lists(st.one_of(st.sampled_from(chosen), noise), max_size=20))
    body = b"".join(pieces)
    cuts = tuple(sorted(draw(st.lists(st.integers(0, len(body)), max_size=6))))
    return replacements, body, cuts


@settings(max_examples=500, deadline=None)
@given(soups())
def test_any_chunking_of_a_random_soup_matches_the_reference(soup):
    """However a body of overlapping patterns is chunked, the output equals the one-pass reference."""
    replacements, body, cuts = soup
    assert rewrite_in_chunks(replacements, split_at(body, cuts)) == rewrite_reference(body, replacements)


@settings(max_examples=300, deadline=None)
@given(soups())
def test_bytes_held_back_never_exceed_the_longest_pattern(soup):
    """With patterns mapped to themselves, each feed leaves unsent only a suffix shorter than the longest
    pattern, or exactly the longest pattern when it ends the input so far."""
    replacements, body, cuts = soup
    identity = [(pattern, pattern) for pattern, _ in replacements]
    longest = max(len(pattern) for pattern, _ in identity)
    rewriter = BodyRewriter(identity)
    received = sent = b""
    for chunk in split_at(body, cuts):
        received += chunk
        sent += rewriter.feed(chunk)
        held = received[len(sent):]
        assert received.startswith(sent)
        assert len(held) < longest or held in {pattern for pattern, _ in identity}
    assert sent + rewriter.flush() == body
