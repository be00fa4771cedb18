"""Pure rules of the edge: Host matching, cross-site detection, secret masking, callback secrets."""

from __future__ import annotations

import logging

import pytest

from juhe_sync.config import Settings
from juhe_sync.redact import SecretFilter, mask, safe_url, url_secrets
from juhe_sync.service.access import CallbackSecrets, Principal, hash_token, new_token
from juhe_sync.web.edge import HostRule, _cross_site, split_host


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Example.com:8070", ("example.com", "8070")),
        ("example.com", ("example.com", None)),
        ("[::1]:80", ("[::1]", "80")),
        ("[::1]", ("[::1]", None)),
        ("127.0.0.1:1.evil.example", ("127.0.0.1:1.evil.example", None)),
        ("[::1]x", ("[::1]x", None)),
        ("host:", ("host:", None)),
    ],
)
def test_split_host(value: str, expected: tuple[str, str | None]) -> None:
    assert split_host(value) == expected


def test_host_rules() -> None:
    loopback = HostRule(["localhost", "127.0.0.1", "[::1]"])
    assert loopback.allows("localhost:8070") and loopback.allows("[::1]:1") and loopback.allows("127.0.0.1")
    for bad in (None, "", "evil.example", "localhost.evil.example", "127.0.0.1.nip.io:8070", "[::2]"):
        assert not loopback.allows(bad)
    named = HostRule(["sync.example.com:443", "*.corp.example"])
    assert named.allows("sync.example.com:443") and not named.allows("sync.example.com:8443")
    assert named.allows("a.b.corp.example") and not named.allows("corp.example") and not named.allows("xcorp.example")
    assert HostRule(["*"]).allows("anything") and not HostRule(["*"]).listed("anything")


def test_cross_site() -> None:
    rule = HostRule(["localhost", "127.0.0.1"])
    assert not _cross_site(None, None, "localhost:8070", rule)
    assert not _cross_site("http://localhost:8070", "same-origin", "localhost:8070", rule)
    assert not _cross_site("http://127.0.0.1:9", None, "localhost:8070", rule)  # an allowed name
    assert _cross_site("http://evil.example", None, "localhost:8070", rule)
    assert _cross_site("null", None, "localhost:8070", rule)
    assert _cross_site(None, "cross-site", "localhost:8070", rule)
    assert _cross_site("http://localhost:8070.evil.example", None, "localhost:8070", rule)


def test_loopback_detection_and_default_hosts() -> None:
    for host in ("127.0.0.1", "::1", "[::1]", "localhost", "127.1.2.3"):
        assert Settings(host=host).loopback, host
        assert Settings(host=host).host_patterns[:3] == ["localhost", "127.0.0.1", "[::1]"]
    for host in ("0.0.0.0", "::", "192.168.1.2", "sync.example.com"):
        assert not Settings(host=host).loopback, host
        assert Settings(host=host).host_patterns == ["*"]
    assert Settings(allowed_hosts=" A.example , b.example:80 ").host_patterns == ["a.example", "b.example:80"]
    assert Settings(host="127.0.0.2").host_patterns == ["localhost", "127.0.0.1", "[::1]", "127.0.0.2"]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://juhe:s3cret@db:5432/x", "postgresql://juhe:***@db:5432/x"),
        ("postgresql://juhe:p%40ss:w@rd@db/x", "postgresql://juhe:***@db/x"),
        ("postgresql://juhe@db/x?password=s3cret&sslmode=require", "postgresql://juhe@db/x?password=***&sslmode=require"),
        ("sqlite:///./juhe-sync.db", "sqlite:///./juhe-sync.db"),
        ("host=db password='a b' user=x", "host=db password=*** user=x"),
    ],
)
def test_safe_url(url: str, shown: str) -> None:
    assert safe_url(url) == shown


def test_masking_in_free_text_and_log_records() -> None:
    secrets = url_secrets("postgresql://juhe:p%40ss@db/x")
    assert "p%40ss" in secrets and "p@ss" in secrets
    text = 'connection to "db" failed for password p@ss (postgresql://juhe:p%40ss@db/x)'
    assert "p@ss" not in mask(text, secrets) and "p%40ss" not in mask(text, secrets)
    record = logging.LogRecord("x", logging.ERROR, "f", 1, "token %s and %s", ("tok-123456", "ok"), None)
    try:
        raise RuntimeError("boom tok-123456")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    SecretFilter(["tok-123456"]).filter(record)
    assert record.getMessage() == "token *** and ok"
    assert "tok-123456" not in (record.exc_text or "") and "boom ***" in (record.exc_text or "")


def test_settings_list_every_secret() -> None:
    settings = Settings(
        api_token="api-secret-1", callback_token="cb-secret-1", app_secret="app-secret-1",
        database_url="postgresql://u:db-secret-1@h/x",
        device_credentials='{"g": {"app_key": "k", "app_secret": "dev-secret-1", "callback_token": "dev-cb-1"}}',
    )  # fmt: skip
    assert {"api-secret-1", "cb-secret-1", "app-secret-1", "db-secret-1", "dev-secret-1", "dev-cb-1"} <= set(
        settings.secrets()
    )
    assert "api-secret-1" not in repr(settings) and "cb-secret-1" not in repr(settings)


def test_callback_secrets() -> None:
    none = CallbackSecrets([], {})
    assert not none.required
    rotating = CallbackSecrets(Settings(callback_token=" old , new ").callback_tokens, {})
    assert rotating.accepts("old") and rotating.accepts("new") and not rotating.accepts("old , new")
    both = CallbackSecrets(["global"], {"dev": "own"})
    assert both.required and both.needs_guid
    assert both.accepts("global", "other") and not both.accepts("own", "other")
    assert both.accepts("own", "dev") and not both.accepts("global", "dev")
    assert not both.accepts(None, "other") and not both.accepts("", "other")
    assert both.plausible("own") and both.plausible("global") and not both.plausible("x") and not both.plausible(None)
    only_devices = CallbackSecrets([], {"dev": "own"})
    assert only_devices.accepts("own", "dev") and not only_devices.accepts("", "other")


def test_tokens_and_principals() -> None:
    token = new_token()
    assert token.startswith("jst_") and len(token) >= 40 and new_token() != token
    assert hash_token(token) != hash_token(new_token()) and len(hash_token(token)) == 32
    scoped = Principal("crm", frozenset({"a"}), False)
    assert scoped.may_read("a") and not scoped.may_read("b")


def test_sync_period_in_seconds_and_the_deprecated_minutes() -> None:
    assert Settings().sync_period == 1800.0
    assert Settings(sync_period=90).sync_period == 90
    with pytest.warns(FutureWarning, match="JUHE_SYNC_SYNC_PERIOD"):
        assert Settings(sync_interval=2).sync_period == 120
    with pytest.warns(FutureWarning):
        assert Settings(sync_interval=2, sync_period=5).sync_period == 5


def test_a_browser_write_must_come_from_the_very_origin_of_the_page() -> None:
    from juhe_sync.errors import Forbidden
    from juhe_sync.web.edge import require_same_origin

    require_same_origin("https://juhe.example.com", "same-origin", "juhe.example.com")
    require_same_origin(None, None, "juhe.example.com")  # not a browser's cross-origin request
    # A sibling that a *.example.com allow-list admits is same-site, not same-origin.
    for origin, site in (("https://evil.example.com", "same-site"), ("https://evil.example.com", None),
                         ("null", None), ("https://juhe.example.com", "cross-site")):  # fmt: skip
        with pytest.raises(Forbidden):
            require_same_origin(origin, site, "juhe.example.com")
