"""Settings: TOLLGATE_* variables and TOML, named errors, secrets hidden."""

from __future__ import annotations

import pytest

from gateway.core import config


def test_settings_read_tollgate_variables():
    settings = config.load({"TOLLGATE_PORT": "9090", "TOLLGATE_TARGET_URL": "http://127.0.0.1:1",
                            "TOLLGATE_PLAN_LIMITS_PER_MIN": "free=5,premium=50,enterprise=0",
                            "TOLLGATE_TRUST_FORWARDED": "yes"})
    assert settings.port == 9090 and settings.target_url == "http://127.0.0.1:1"
    assert settings.plan_limits_per_min == {"free": 5, "premium": 50, "enterprise": 0}
    assert settings.trust_forwarded is True


def test_settings_are_frozen():
    settings = config.load({})
    with pytest.raises(AttributeError):
        settings.port = 1  # type: ignore[misc]


def test_a_missing_required_setting_is_named():
    settings = config.load({"TOLLGATE_REDIS_URL": "redis://x"})
    with pytest.raises(config.ConfigError, match="TOLLGATE_DATABASE_URL"):
        settings.require("database_url", "redis_url")


def test_a_malformed_number_is_named():
    with pytest.raises(config.ConfigError, match="TOLLGATE_PORT"):
        config.load({"TOLLGATE_PORT": "eighty"})


def test_secrets_never_show_in_repr():
    settings = config.load({"TOLLGATE_DATABASE_URL": "postgresql://u:hunter2@h/db",
                            "TOLLGATE_JWT_SECRET": "s3cret-value"})
    assert "hunter2" not in repr(settings) and "s3cret-value" not in repr(settings)
    assert settings.jwt_secret.value == "s3cret-value"


def test_a_toml_file_is_read_and_the_environment_wins(tmp_path):
    path = tmp_path / "tollgate.toml"
    path.write_text('port = 7000\ntarget_url = "http://127.0.0.1:2"\n')
    settings = config.load({"TOLLGATE_CONFIG": str(path), "TOLLGATE_PORT": "7001"})
    assert (settings.port, settings.target_url) == (7001, "http://127.0.0.1:2")


def test_unknown_toml_keys_are_refused(tmp_path):
    path = tmp_path / "tollgate.toml"
    path.write_text("prot = 7000\n")
    with pytest.raises(config.ConfigError, match="prot"):
        config.load({"TOLLGATE_CONFIG": str(path)})


def test_a_partial_plan_limit_keeps_the_other_defaults():
    settings = config.load({"TOLLGATE_PLAN_LIMITS_PER_MIN": "free=50"})
    assert settings.plan_limits_per_min == {"free": 50, "premium": 500, "enterprise": 0}


def test_an_unknown_plan_is_refused():
    with pytest.raises(config.ConfigError, match="PLAN_LIMITS"):
        config.load({"TOLLGATE_PLAN_LIMITS_PER_MIN": "gold=5"})


@pytest.mark.parametrize("raw", ["1,2", "1,2,3,4", "a,b,c", "-1,1,1"])
def test_a_malformed_default_ai_price_stops_start_up_naming_the_setting(raw):
    with pytest.raises(config.ConfigError, match="TOLLGATE_AI_DEFAULT_PRICE"):
        config.Settings(ai_default_price=raw)


def test_the_default_ai_price_and_provider_keys_are_parsed_by_the_settings():
    settings = config.Settings(ai_default_price="0.5, 1.5,0.25", openai_api_keys=" sk-a, ,sk-b ",
                               anthropic_read_timeout_s=7.0, ai_read_timeout_s=30.0)
    assert settings.default_ai_price_micro() == (500_000, 1_500_000, 250_000)
    assert config.Settings().default_ai_price_micro() is None
    assert settings.api_keys("openai") == ("sk-a", "sk-b") and settings.api_keys("gemini") == ()
    assert (settings.read_timeout_s("anthropic"), settings.read_timeout_s("openai")) == (7.0, 30.0)


@pytest.mark.parametrize("secure, public_url, expected", [
    ("auto", "http://127.0.0.1:8080", False), ("auto", "https://gw.example", True),
    ("true", "http://127.0.0.1:8080", True), ("off", "https://gw.example", False)])
def test_the_session_cookie_is_secure_as_set_or_as_the_public_url_says(secure, public_url, expected):
    settings = config.load({"TOLLGATE_COOKIE_SECURE": secure, "TOLLGATE_PUBLIC_URL": public_url})
    assert settings.cookie_is_secure() is expected


@pytest.mark.parametrize("environ, named", [
    ({"TOLLGATE_COOKIE_SECURE": "maybe"}, "TOLLGATE_COOKIE_SECURE"),
    ({"TOLLGATE_COOKIE_SAMESITE": "sometimes"}, "TOLLGATE_COOKIE_SAMESITE"),
    ({"TOLLGATE_COOKIE_SAMESITE": "none"}, "TOLLGATE_COOKIE_SAMESITE=none needs a Secure cookie"),
    ({"TOLLGATE_BROWSER_LINK_TTL_S": "0"}, "TOLLGATE_BROWSER_LINK_TTL_S")])
def test_a_cookie_setting_browsers_would_refuse_stops_start_up_naming_it(environ, named):
    with pytest.raises(config.ConfigError, match=named):
        config.load(environ)


@pytest.mark.parametrize("changes", [{"ledger_batch_window_s": 0.003}, {"ledger_batch_window_s": -0.001},
                                     {"ledger_batch_items_max": 0}, {"ledger_batch_lanes": 0},
                                     {"ledger_batch_lanes": 3}, {"ledger_batch_lanes": 8}])
def test_a_ledger_batch_window_beyond_two_milliseconds_or_an_empty_batch_stops_start_up(changes):
    with pytest.raises(config.ConfigError, match="TOLLGATE_LEDGER_BATCH"):
        config.Settings(**changes)
