"""Rewriting of upstream URLs in bodies, Location and Set-Cookie so the client stays on the gateway."""

import re
from dataclasses import dataclass, field
from urllib.parse import SplitResult, urlsplit

# text/xml is included: feeds, sitemaps and SOAP replies are documents whose links point back at
# the upstream just like XHTML. JSON is not: API payloads are data a client may compare verbatim.
REWRITABLE_MEDIA_TYPES: frozenset[str] = frozenset({
    "text/html", "text/css", "application/javascript", "text/javascript", "application/x-javascript",
    "application/xhtml+xml", "text/xml",
})

DEFAULT_PORTS = {"http": 80, "https": 443}

# Bytes that continue a host, port or path segment. A pattern ending in one of them and followed by
# another names a different URL (`/base` in `/basement`, `example.com` in `example.com.au`,
# `example.com` in `example.com:8443`), so it is not replaced there.
_CONTINUATION_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~%:@")
_NOT_CONTINUED = rb"(?![A-Za-z0-9\-._~%:@])"

_URL_WITH_AUTHORITY = re.compile(r"(?:([A-Za-z][A-Za-z0-9+.\-]*):)?//([^/?#]*)(.*)", re.DOTALL)


def is_rewritable(content_type: str | None) -> bool:
    """True for the text types whose bodies carry upstream URLs (parameters ignored, any case)."""
    if not content_type:
        return False
    return content_type.partition(";")[0].strip().lower() in REWRITABLE_MEDIA_TYPES


@dataclass(frozen=True, slots=True)
class UrlMap:
    """Where the target lives and where the gateway exposes it, both without a trailing slash."""

    target_url: str  # e.g. "http://127.0.0.1:9000/base"
    public_url: str  # gateway public base + mount prefix, e.g. "http://127.0.0.1:8080/api/v1/proxy"
    # Compiled once, shared by every rewritten response: compiling per response cost ~90 µs each.
    body_patterns: "BodyPatterns" = field(init=False, repr=False, compare=False)
    # X-Forwarded-Proto and -Host for the target: the gateway as clients reach it, from the
    # configured public URL; never the client's own Host header, which anyone can set.
    forwarded_proto: str = field(init=False, repr=False, compare=False)
    forwarded_host: str = field(init=False, repr=False, compare=False)
    # The target's (scheme, host, effective port, base path) and the mount's public path, parsed
    # once: headers are rewritten on every response that carries a Location or Set-Cookie.
    target: tuple[str, str, int, str] = field(init=False, repr=False, compare=False)
    public_path: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "body_patterns", BodyPatterns(self.body_replacements()))
        public = urlsplit(self.public_url)
        object.__setattr__(self, "forwarded_proto", public.scheme.lower())
        object.__setattr__(self, "forwarded_host", public.netloc)
        object.__setattr__(self, "target", _endpoint(self.target_url))
        object.__setattr__(self, "public_path", public.path)

    @classmethod
    def from_urls(cls, target_url: str, public_base_url: str, mount_prefix: str) -> "UrlMap":
        target = _require_http_url(target_url, "target_url")
        _require_http_url(public_base_url, "public_base_url")
        if target.query or target.fragment:
            raise ValueError(f"target_url must not carry a query or fragment: {target_url!r}")
        mount_path = "/" + mount_prefix.strip("/") if mount_prefix.strip("/") else ""
        authority = _authority(target.hostname or "", target.port)
        return cls(
            target_url=f"{target.scheme.lower()}://{authority}{target.path.rstrip('/')}",
            public_url=public_base_url.rstrip("/") + mount_path,
        )

    def body_replacements(self) -> list[tuple[bytes, bytes]]:
        """Absolute and protocol-relative target URLs, plain and JSON/JS-escaped -> public forms."""
        scheme, host, port, base_path = _endpoint(self.target_url)
        authorities = [_authority(host, port)]
        if port == DEFAULT_PORTS[scheme]:
            authorities.append(_authority(host, None))
        public_relative = self.public_url.partition(":")[2]
        replacements = []
        for authority in authorities:
            relative = f"//{authority}{base_path}"
            pairs = [(f"{scheme}:{relative}", self.public_url), (relative, public_relative)]
            for pattern, replacement in pairs:
                replacements.append((pattern.encode(), replacement.encode()))
                replacements.append((_escape_slashes(pattern), _escape_slashes(replacement)))
        return replacements


class BodyPatterns:
    """The replacements of a BodyRewriter, compiled: immutable, built once, shared by many streams."""

    def __init__(self, replacements: list[tuple[bytes, bytes]]) -> None:
        self.replacement_by_pattern = dict(replacements)
        if len(self.replacement_by_pattern) != len(replacements) or b"" in self.replacement_by_pattern:
            raise ValueError("patterns must be non-empty and distinct")
        patterns = sorted(self.replacement_by_pattern, key=len, reverse=True)
        # Longest first: a regex alternation takes the first alternative that matches at a position.
        alternatives = [re.escape(p) + (_NOT_CONTINUED * (p[-1] in _CONTINUATION_BYTES)) for p in patterns]
        self.regex = re.compile(b"|".join(alternatives) if patterns else rb"(?!)")  # (?!) never matches
        self.prefixes = frozenset(p[:length] for p in patterns for length in range(1, len(p) + 1))
        self.pattern_length_max = max(map(len, patterns), default=0)


class BodyRewriter:
    """Streaming multi-pattern byte replacer: feed chunks, get rewritten bytes.

    Rule: scanning left to right, at each position the longest pattern that matches wins, unless a
    URL-continuation byte follows it (see _CONTINUATION_BYTES); matches never overlap. A pattern
    split across chunks is still replaced. Only a suffix that could still grow into a match is held
    back: at most (longest pattern - 1) bytes, or the longest pattern itself when it ends the chunk
    and the next byte must decide whether it is continued.
    """

    def __init__(self, replacements: list[tuple[bytes, bytes]] | BodyPatterns) -> None:
        self._patterns = replacements if isinstance(replacements, BodyPatterns) else BodyPatterns(replacements)
        self._tail = b""

    def feed(self, chunk: bytes) -> bytes:
        buffer = self._tail + chunk
        return self._rewrite(buffer, self._undecided_start(buffer))

    def flush(self) -> bytes:
        """Return the held-back tail, rewritten, at the end of the stream."""
        buffer = self._tail
        return self._rewrite(buffer, len(buffer))

    def _undecided_start(self, buffer: bytes) -> int:
        """First position whose match could still start, grow or be continued by bytes to come."""
        # Earlier positions are decided: the longest pattern and the byte after it fit in the buffer.
        patterns = self._patterns
        for start in range(max(0, len(buffer) - patterns.pattern_length_max), len(buffer)):
            if buffer[start:] in patterns.prefixes:
                return start
        return len(buffer)

    def _rewrite(self, buffer: bytes, undecided_start: int) -> bytes:
        pieces: list[bytes] = []
        position = 0
        replacement_by_pattern = self._patterns.replacement_by_pattern
        for match in self._patterns.regex.finditer(buffer):
            if match.start() >= undecided_start:
                break
            pieces += (buffer[position:match.start()], replacement_by_pattern[match.group()])
            position = match.end()
        keep_from = max(position, undecided_start)
        pieces.append(buffer[position:keep_from])
        self._tail = buffer[keep_from:]
        return b"".join(pieces)


def rewrite_location(value: str, url_map: UrlMap) -> str:
    """Target URL or absolute path under the target's base -> its public form; anything else unchanged."""
    scheme, host, port, base_path = url_map.target
    if value.startswith("/") and not value.startswith("//"):
        remainder = _remainder_under(value, base_path)
        return value if remainder is None else _join_path(url_map.public_path, remainder)
    match = _URL_WITH_AUTHORITY.fullmatch(value)
    if match is None or (match[1] or scheme).lower() != scheme:
        return value
    if not _names_endpoint(match[2], scheme, host, port):
        return value
    # A URL on the target outside its base path is not reachable through the mount: left as is.
    remainder = _remainder_under(match[3], base_path)
    if remainder is None:
        return value
    public_url = url_map.public_url if match[1] else url_map.public_url.partition(":")[2]
    return public_url + remainder


def rewrite_set_cookie(value: str, url_map: UrlMap) -> str:
    """Set-Cookie with a Domain naming the target removed and Path moved under the mount (RFC 6265 5.2)."""
    _, host, _, base_path = url_map.target
    mount_path = url_map.public_path
    name_value, *attributes = value.split(";")
    kept = [name_value]
    has_path = False
    for attribute in attributes:
        name, _, attribute_value = attribute.partition("=")
        name = name.strip().lower()
        if name == "domain" and _domain_matches(host, attribute_value.strip().removeprefix(".").lower()):
            continue  # host-only on the gateway: the client would reject a Domain naming the upstream
        if name == "path" and attribute_value.strip().startswith("/"):
            public_path = _public_cookie_path(attribute_value.strip(), base_path, mount_path)
            attribute = _with_value(attribute, public_path)
            has_path = True
        kept.append(attribute)
    if not has_path:
        # Without Path the client derives one from the gateway URL: for the bare mount `/api/v1/proxy`
        # that is `/api/v1`, reaching sibling routes. Pinning it to the mount keeps it with this target,
        # at the cost of widening a narrower default path the upstream may have implied.
        kept.append(f" Path={_join_path(mount_path, '')}")
    return ";".join(kept)


def _public_cookie_path(path: str, base_path: str, mount_path: str) -> str:
    remainder = _remainder_under(path, base_path)
    # A Path above the base (Path=/ over /base) covers the whole mount; a Path beside it names pages
    # the mount cannot reach, and is pinned to the mount rather than left to match other routes.
    if remainder is None or (not base_path and remainder == "/"):
        remainder = ""
    return _join_path(mount_path, remainder)


def _with_value(attribute: str, new_value: str) -> str:
    name, _, old_value = attribute.partition("=")
    leading_space = old_value[: len(old_value) - len(old_value.lstrip())]
    return f"{name}={leading_space}{new_value}"


def _domain_matches(host: str, domain: str) -> bool:
    """RFC 6265 5.1.3 domain-match, without its IP-address exception: the client would reject such
    a Domain on the gateway anyway, so removing it can only make a cookie usable."""
    return bool(domain) and (host == domain or host.endswith("." + domain))


def _remainder_under(reference: str, base_path: str) -> str | None:
    """What follows base_path in a path (with query and fragment) lying under it, else None."""
    if not reference.startswith(base_path):
        return None
    remainder = reference[len(base_path):]
    return remainder if not remainder or remainder[0] in "/?#" else None


def _join_path(mount_path: str, remainder: str) -> str:
    joined = mount_path + remainder
    return joined if joined.startswith("/") else "/" + joined


def _names_endpoint(authority: str, scheme: str, host: str, port: int) -> bool:
    try:
        parts = urlsplit("//" + authority)
        return parts.hostname == host and (parts.port or DEFAULT_PORTS[scheme]) == port
    except ValueError:  # a port that is not a number, or out of range
        return False


def _endpoint(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, effective port, base path without trailing slash) of a validated URL."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, parts.hostname or "", parts.port or DEFAULT_PORTS[scheme], parts.path.rstrip("/")


def _escape_slashes(url: str) -> bytes:
    return url.replace("/", "\\/").encode()


def _authority(host: str, port: int | None) -> str:
    bracketed = f"[{host}]" if ":" in host else host
    return bracketed if port is None else f"{bracketed}:{port}"


def _require_http_url(url: str, name: str) -> SplitResult:
    parts = urlsplit(url)
    if parts.scheme.lower() not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"{name} must be an absolute http(s) URL: {url!r}")
    return parts
