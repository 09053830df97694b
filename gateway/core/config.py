"""Settings: one frozen object built once from TOLLGATE_* variables and an optional TOML file."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Mapping

from gateway.core import admin_origin, cookie_settings, payment_settings, setting_values
# DEFAULT_TOKEN_PRICES and PLANS are read through this module too.
from gateway.core.plan_settings import (DEFAULT_PLAN_LIMITS_PER_MIN, DEFAULT_TOKEN_PRICES, PLANS,  # noqa: F401
                                        parse_plan_limits, parse_token_prices)

PREFIX = "TOLLGATE_"


class ConfigError(Exception):
    """A setting is missing or malformed; the message names it."""


class Secret(str):
    """A string that never shows itself in repr or logs."""

    def __repr__(self) -> str:
        return "'**********'"

    @property
    def value(self) -> str:
        return str.__str__(self)


@dataclass(frozen=True, slots=True)
class Settings:
    # Where the gateway's state lives; empty means "embedded default" (dev command only).
    database_url: Secret = Secret("")
    redis_url: Secret = Secret("")
    # A streaming replica of database_url for the admin UI's and the usage reports' reads (decision
    # 0024); empty = those reads go to the primary too. Writes never go there.
    database_replica_url: Secret = Secret("")
    # redis_url names one node of a Redis Cluster (any; the client finds the others and follows
    # failovers) rather than a single Redis (decision 0023).
    redis_cluster: bool = False
    # A revocation leaves the credential outbox only once this many replicas of its Redis master
    # hold it too (WAIT, up to half of redis_timeout_s), so a failover cannot lose it; until then
    # every gateway refuses the credential from memory. 0 = the master's word (decision 0023).
    redis_revocation_replicas: int = 0
    host: str = "127.0.0.1"
    port: int = 8080
    # The desktop clients' upstream, e.g. http://127.0.0.1:9000 (may carry a base path).
    target_url: str = ""
    # The gateway's own base URL as clients see it; used for rewriting upstream URLs.
    public_url: str = ""
    # An extra mount point for the target besides /api/v1/proxy, e.g. "/zenzefi"; empty = none.
    target_prefix: str = ""
    jwt_secret: Secret = Secret("")
    workers: int = 1
    # Device binding: a token's device is released after this long without requests.
    device_idle_s: int = 300
    # Requests per minute per token and per user by plan; 0 = unlimited.
    plan_limits_per_min: Mapping[str, int] = field(
        default_factory=lambda: dict(DEFAULT_PLAN_LIMITS_PER_MIN)
    )
    # Requests per minute per client IP across all tokens; 0 = unlimited.
    ip_limit_per_min: int = 1000
    rate_window_s: int = 60
    # Take the client IP from X-Forwarded-For (only behind a trusted proxy).
    trust_forwarded: bool = False
    # Upper bound of a proxied request body.
    body_size_max_bytes: int = 64 * 1024 * 1024
    # A JSON API request body, inflated, at most (the AI routes have ai_body_max_bytes).
    json_body_max_bytes: int = 64 * 1024
    upstream_connect_timeout_s: float = 5.0
    upstream_read_timeout_s: float = 60.0
    upstream_connections_max: int = 256
    # Client connections, per worker process. A new connection must send a whole request head
    # (request line and headers) within request_head_timeout_s, and a kept-alive one must finish
    # a head it has started within as long; otherwise it is closed. Bodies and answers have their
    # own limits (body_size_max_bytes, the upstream timeouts).
    request_head_timeout_s: float = 10.0
    # A kept-alive connection waiting for its next request is closed after this long.
    idle_timeout_s: float = 75.0
    # A request body the gateway reads itself (JSON API, AI routes) must have arrived this long
    # after its head, in seconds; else 408 (a body sent a byte at a time would hold its
    # connection for good). Proxied bodies stream to the target and are not timed by it.
    request_body_timeout_s: float = 60.0
    # Open client connections per worker in total and per peer address (behind a proxy, the
    # proxy's); a connection beyond either cap is closed at once. 0 = unlimited.
    connections_max: int = 4096
    connections_per_ip_max: int = 256
    # Redis auth-record cache lifetime (also bounded by the token's expiry).
    auth_cache_ttl_s: int = 300
    # Unknown tokens are remembered this long so floods of bad tokens skip PostgreSQL.
    auth_negative_ttl_s: int = 30
    # Redis is skipped for this long after it failed (fallback to PostgreSQL + local limits).
    redis_retry_after_s: float = 2.0
    redis_timeout_s: float = 0.5
    # Concurrent Redis calls per worker (the pool holds a few more for health checks and revokes).
    redis_connections_max: int = 256
    # Connections (lanes) per worker that carry the desktop path's auto-pipelined script calls
    # (decision 0022); with more than one, a lane takes what queued while another waits for Redis.
    # Count; 1 (measured: the fewest writes and the least CPU per request at 64 connections).
    redis_pipeline_lanes: int = 1
    # Statement timeout for the gateway's own queries; an unresponsive PostgreSQL becomes a 503.
    database_timeout_s: float = 10.0
    session_flush_interval_s: float = 2.0
    # How often each worker voids expired ledger holds.
    hold_expiry_interval_s: float = 5.0
    # Safety-net interval of the credential outbox push (revocations normally arrive by NOTIFY at once).
    credential_outbox_poll_s: float = 1.0
    # How often each worker pays the referral bonuses of purchases whose last token expired.
    referral_sweep_interval_s: float = 60.0
    session_pending_max: int = 100_000
    database_pool_min: int = 1
    database_pool_max: int = 10
    access_token_ttl_s: int = 1800
    refresh_token_ttl_s: int = 7 * 24 * 3600
    magic_link_ttl_s: int = 24 * 3600
    # Access-token prices by duration in hours (credits, decimal strings as in DEFAULT_TOKEN_PRICES;
    # kept in micro-credits); the server's, never the client's.
    token_prices: Mapping[int, int] = field(default_factory=lambda: parse_token_prices(DEFAULT_TOKEN_PRICES))
    # A referrer earns this share of a referred user's first purchase above the threshold.
    referral_bonus_percent: int = 10
    referral_min_purchase_credits: int = 100
    # How magic-link emails leave: "smtp"; "none" (magic-link login off); or "log", development only:
    # the development run (`python -m devkit dev`) prints the mail in its terminal and `tollgate
    # serve` refuses to start with it.
    mail_sender: str = "log"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_username: str = ""
    smtp_password: Secret = Secret("")
    smtp_starttls: bool = False
    mail_from: str = "tollgate@localhost"
    # Where the development run (`python -m devkit dev`) keeps its embedded PostgreSQL/Redis and generated secrets.
    data_dir: str = "/tmp/tollgate-dev"
    # Shared directory for multi-worker metrics; empty = a temporary one per `serve` run.
    metrics_dir: str = ""
    # /metrics and /ready: with a port, served only on metrics_host:metrics_port (the public port
    # answers 404 for them); 0 = on the public port. With a token, they need `Authorization:
    # Bearer <token>`; empty = no token. /health is always public.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0
    metrics_token: Secret = Secret("")
    # `serve --workers N` replaces a worker that dies, waiting longer after each quick death
    # (0.5 s doubling, up to 30 s); more than worker_restarts_max deaths within
    # worker_restart_window_s stop the gateway with exit status 1.
    worker_restarts_max: int = 5
    worker_restart_window_s: float = 60.0
    log_level: str = "INFO"
    # Log lines as "json" (one object a line, with the request's id) or "text"; an access-log line
    # for "all" requests, "errors" (answers of 500 and above) or "off".
    log_format: str = "json"
    access_log: str = "errors"
    # After SIGTERM, in-flight requests and AI streams get this long to finish (then cut and settled), in s.
    shutdown_grace_s: float = 30.0
    # How often each worker probes PostgreSQL and Redis and counts open holds, and how often it
    # reconciles the ledger (0 = never), for the operator's gauges, in seconds.
    watch_interval_s: float = 15.0
    reconcile_interval_s: float = 600.0
    # AI upstreams: base URLs and comma-separated keys, used round-robin.
    openai_base_url: str = "https://api.openai.com/v1"
    openai_api_keys: Secret = Secret("")
    anthropic_base_url: str = "https://api.anthropic.com"
    anthropic_api_keys: Secret = Secret("")
    gemini_base_url: str = "https://generativelanguage.googleapis.com"
    gemini_api_keys: Secret = Secret("")
    ai_connect_timeout_s: float = 10.0
    # The longest silence between two bytes of an AI response (streams included).
    ai_read_timeout_s: float = 300.0
    # Per-provider overrides of the read timeout; 0 = ai_read_timeout_s.
    openai_read_timeout_s: float = 0.0
    anthropic_read_timeout_s: float = 0.0
    gemini_read_timeout_s: float = 0.0
    ai_body_max_bytes: int = 20 * 1024 * 1024
    # A whole (non-stream) upstream AI answer larger than this is refused (502) rather than held in memory.
    ai_answer_max_bytes: int = 256 * 1024 * 1024
    # AI usage rows of calls that held nothing, queued for the next batch at most (beyond: dropped, logged).
    usage_pending_max: int = 100_000
    # After a client leaves a stream, how long to keep reading the upstream for its usage report
    # before charging an estimate instead (decision 0011), in seconds.
    ai_drain_timeout_s: float = 60.0
    # How long an AI call's hold may stay open before the sweep voids it (longer than any call).
    ai_hold_ttl_s: int = 3600
    # How long a call's settlement keeps retrying while PostgreSQL is unreachable (a restart, a
    # failover) before its hold is left to the sweep uncharged, in seconds (decision 0026).
    ai_settle_retry_s: float = 30.0
    # Price for models missing from the price table, "input,output,cached" credits per million
    # tokens; empty = unknown models are refused.
    ai_default_price: str = ""
    ai_default_max_output_tokens: int = 16384
    price_refresh_interval_s: float = 10.0
    usage_flush_interval_s: float = 1.0
    # Group commit of AI holds and settlements (decision 0021): an idle lane's wait for company (s, 0..0.002),
    # items per batch at most, and lanes (batches in flight per worker, each its users'; 1, 2 or 4).
    ledger_batch_window_s: float = 0.0
    ledger_batch_items_max: int = 256
    ledger_batch_lanes: int = 2
    # -- Accounts hygiene (decision 0014) --
    # Requests per minute from one client address (IPv6: one /64) to login, register and magic-link
    # together; 0 = unlimited.
    auth_ip_limit_per_min: int = 30
    # Failed logins within login_failure_window_s: an (email, address) pair pauses at the first count;
    # at the second, an email pauses every address that has failed on it (never the owner's own).
    login_failures_per_ip_max: int = 10
    login_failures_per_email_max: int = 100
    login_failure_window_s: int = 900
    # -- Payments (decision 0017): a provider is on when all its settings are set, off when none is --
    # The price of one credit in money per currency, "USD=1.00,RUB=95.00" (the first is the default).
    credit_prices: Mapping[str, Decimal] = field(default_factory=dict)
    # One payment buys at most this many credits.
    payment_credits_max: int = 1_000_000
    stripe_api_key: Secret = Secret("")
    stripe_webhook_secret: Secret = Secret("")
    stripe_base_url: str = "https://api.stripe.com"
    cryptocloud_api_key: Secret = Secret("")
    cryptocloud_shop_id: str = ""
    cryptocloud_secret: Secret = Secret("")
    cryptocloud_base_url: str = "https://api.cryptocloud.plus"
    robokassa_login: str = ""
    # With robokassa_test on, the shop's pair of test passwords.
    robokassa_password1: Secret = Secret("")
    robokassa_password2: Secret = Secret("")
    # The shop's hash: md5, sha1, sha256, sha384, sha512 or ripemd160.
    robokassa_hash: str = "md5"
    robokassa_test: bool = False
    robokassa_base_url: str = "https://auth.robokassa.ru/Merchant/Index.aspx"
    # A 54-FZ Receipt on the link: its tax system (sno; empty = no Receipt) and its line's VAT code.
    robokassa_receipt_sno: str = ""
    robokassa_receipt_tax: str = "none"
    # A provider API call (connect and whole answer), in seconds.
    payment_timeout_s: float = 10.0
    # A payment still pending this long after creation is asked after at its provider (its webhook
    # may be lost), and again every interval; in seconds.
    payment_recheck_delay_s: float = 600.0
    payment_recheck_interval_s: float = 60.0
    # A webhook's raw body, at most.
    webhook_body_max_bytes: int = 256 * 1024
    # -- The admin web UI at /admin/ (decision 0018) --
    # A login lasts at most admin_session_ttl_s and ends after admin_session_idle_s without a page
    # view, in seconds. Its cookie is Secure when TOLLGATE_PUBLIC_URL is https.
    admin_session_ttl_s: int = 8 * 3600
    admin_session_idle_s: int = 3600
    # How often the dashboard samples the request metrics (requests/s, errors, p95; all workers), in seconds.
    admin_traffic_sample_s: float = 5.0
    # Its origin (decision 0027): a listener of its own, host:port (the main port then answers 404
    # under /admin), and that listener's URL as browsers see it (Origin checks, Secure cookies;
    # empty = http://<admin_listen>). Without a listener it is off, unless admin_on_main_origin
    # accepts that the proxied target's pages, served on the main origin, share its origin.
    admin_listen: str = ""
    admin_public_url: str = ""
    admin_on_main_origin: bool = False
    # -- API controls (decision 0019) --
    # After a rotation an API key's old secret keeps working this long, in seconds (0 = refused at once).
    api_key_rotation_grace_s: int = 24 * 3600
    # How often each worker gives the budget alerts that are due, in seconds.
    budget_alert_interval_s: float = 10.0
    # Browser origins (scheme://host[:port], comma-separated) the JSON API answers cross-origin
    # requests from, with credentials; empty = none. Preflight answers are cached this long, in seconds.
    cors_origins: str = ""
    cors_max_age_s: int = 600
    # -- Browser sessions of the desktop path (decision 0020) --
    # The session cookie's Secure attribute: auto (on when TOLLGATE_PUBLIC_URL is https), true or
    # false; its SameSite: lax, strict or none (none needs Secure). Always HttpOnly and Path=/.
    cookie_secure: str = "auto"
    cookie_samesite: str = "lax"
    # A browser session lasts at most this long, and never past its access token, in seconds.
    browser_session_ttl_s: int = 12 * 3600
    # A one-time link opens a browser session within this long of being made, once, in seconds.
    browser_link_ttl_s: int = 60

    def __post_init__(self) -> None:
        # Secrets stay Secret however the object was built (replace(), tests, TOML).
        for name in ("database_url", "database_replica_url", "redis_url", "jwt_secret", "smtp_password",
                     "openai_api_keys", "anthropic_api_keys", "gemini_api_keys", "metrics_token", "stripe_api_key",
                     "stripe_webhook_secret", "cryptocloud_api_key", "cryptocloud_secret",
                     "robokassa_password1", "robokassa_password2"):
            value = getattr(self, name)
            if not isinstance(value, Secret):
                object.__setattr__(self, name, Secret(value))
        object.__setattr__(self, "plan_limits_per_min", parse_plan_limits(self.plan_limits_per_min))
        prices = self.token_prices
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in prices.values()):
            prices = parse_token_prices(prices)  # given in credits (strings), kept in micro-credits
        object.__setattr__(self, "token_prices", dict(prices))
        self._check_payments()
        if self.mail_sender not in ("log", "smtp", "none"):
            raise ConfigError(f"{PREFIX}MAIL_SENDER must be 'smtp', 'none' or (development) 'log', "
                              f"not {self.mail_sender!r}")
        if not 0 <= self.referral_bonus_percent <= 100:
            raise ConfigError(f"{PREFIX}REFERRAL_BONUS_PERCENT must be within 0..100")
        self._check_serving()
        self._check_cookies()

    def _check_payments(self) -> None:
        try:
            prices = payment_settings.parse_credit_prices(self.credit_prices)
        except ValueError as error:
            raise ConfigError(f"{PREFIX}CREDIT_PRICES: {error}") from error
        object.__setattr__(self, "credit_prices", prices)
        if problems := payment_settings.problems(self, PREFIX):
            raise ConfigError("; ".join(problems))

    def _check_serving(self) -> None:
        for name in ("request_head_timeout_s", "idle_timeout_s", "request_body_timeout_s",
                     "worker_restart_window_s", "watch_interval_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{PREFIX}{name.upper()} must be > 0")
        for name in ("connections_max", "connections_per_ip_max", "worker_restarts_max", "metrics_port",
                     "shutdown_grace_s", "reconcile_interval_s"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{PREFIX}{name.upper()} must be >= 0")
        if self.metrics_port and self.metrics_port == self.port:
            raise ConfigError(f"{PREFIX}METRICS_PORT must differ from {PREFIX}PORT (or be 0)")
        if (not 0 <= self.ledger_batch_window_s <= 0.002 or self.ledger_batch_items_max < 1
                or self.ledger_batch_lanes not in (1, 2, 4)):
            raise ConfigError(f"{PREFIX}LEDGER_BATCH_WINDOW_S: 0..0.002; {PREFIX}LEDGER_BATCH_ITEMS_MAX: >= 1; "
                              f"{PREFIX}LEDGER_BATCH_LANES: 1, 2 or 4 (a divisor of the revenue shards)")
        if self.log_format not in ("json", "text") or self.access_log not in ("all", "errors", "off"):
            raise ConfigError(f"{PREFIX}LOG_FORMAT must be json or text, {PREFIX}ACCESS_LOG all, errors or off")
        if problems := admin_origin.problems(self, PREFIX):
            raise ConfigError("; ".join(problems))
        if not 1 <= self.redis_pipeline_lanes <= 64:
            raise ConfigError(f"{PREFIX}REDIS_PIPELINE_LANES must be 1..64")
        self.default_ai_price_micro()  # a malformed price stops start-up, naming the setting

    def _check_cookies(self) -> None:
        problem = cookie_settings.problem(self.cookie_secure, self.cookie_samesite, self.public_url,
                                          self.browser_session_ttl_s, self.browser_link_ttl_s)
        if problem:
            raise ConfigError(problem)

    def cookie_is_secure(self) -> bool:
        """The session cookie's Secure attribute, TOLLGATE_COOKIE_SECURE=auto resolved against the public URL."""
        return cookie_settings.is_secure(self.cookie_secure, self.public_url)

    def api_keys(self, provider: str) -> tuple[str, ...]:
        """A provider's upstream keys (TOLLGATE_<PROVIDER>_API_KEYS, comma-separated), used round-robin."""
        raw: Secret = getattr(self, f"{provider}_api_keys")
        return tuple(key.strip() for key in raw.value.split(",") if key.strip())

    def read_timeout_s(self, provider: str) -> float:
        """A provider's read timeout: its own override, else TOLLGATE_AI_READ_TIMEOUT_S."""
        return getattr(self, f"{provider}_read_timeout_s") or self.ai_read_timeout_s

    def default_ai_price_micro(self) -> tuple[int, int, int] | None:
        """TOLLGATE_AI_DEFAULT_PRICE ('input,output,cached' credits per million tokens) in
        micro-credits, or None when unset (models outside the price table are refused)."""
        try:
            return setting_values.default_ai_price_micro(self.ai_default_price)
        except ValueError as error:
            raise ConfigError(f"{PREFIX}AI_DEFAULT_PRICE: {error}") from error

    @property
    def target_prefixes(self) -> tuple[str, ...]:
        extra = ("/" + self.target_prefix.strip("/"),) if self.target_prefix else ()
        return ("/api/v1/proxy", *extra)

    def require(self, *names: str) -> None:
        missing = [n for n in names if not getattr(self, n)]
        if missing:
            raise ConfigError("missing required setting(s): " + ", ".join(PREFIX + n.upper() for n in missing))

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def _coerce(name: str, annotation: str, raw: Any) -> Any:
    try:
        return Secret(str(raw)) if annotation == "Secret" else setting_values.coerce(annotation, raw)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{PREFIX}{name.upper()}: cannot read {raw!r} as {annotation}") from error


def load(
    environ: Mapping[str, str] | None = None, toml_path: str | None = None, **overrides: Any
) -> Settings:
    """Build Settings from a TOML file (TOLLGATE_CONFIG), then the environment, then overrides."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    toml_path = toml_path or environ.get(PREFIX + "CONFIG")
    if toml_path:
        with open(toml_path, "rb") as handle:
            values.update(tomllib.load(handle))
    for spec in dataclasses.fields(Settings):
        key = PREFIX + spec.name.upper()
        if key in environ:
            values[spec.name] = environ[key]
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {spec.name: spec for spec in dataclasses.fields(Settings)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError("unknown setting(s): " + ", ".join(unknown))
    coerced = {n: _coerce(n, str(known[n].type), v) for n, v in values.items()}
    settings = Settings(**coerced)
    if settings.public_url == "":
        settings = settings.replace(public_url=f"http://{settings.host}:{settings.port}")
    return settings
