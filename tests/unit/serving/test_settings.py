from __future__ import annotations

import pytest

from serving.settings import SettingsError, load_settings


def test_defaults_are_the_documented_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LONGRANK_STORE_URL", "LONGRANK_HOST", "LONGRANK_PORT", "LONGRANK_ADMIN_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    s = load_settings()
    assert (s.store_url, s.host, s.port, s.admin_token) == ("sqlite:///./var/behaviors.db", "127.0.0.1", 8000, None)


def test_environment_is_read_with_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LONGRANK_PORT", "8123")
    monkeypatch.setenv("LONGRANK_ACTIONS", "[0,1,2,3,4,5]")
    s = load_settings()
    assert s.port == 8123 and s.actions == (0, 1, 2, 3, 4, 5)
    assert s.store_options().actions == frozenset(range(6))


def test_overrides_beat_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LONGRANK_PORT", "8123")
    assert load_settings(port=9000).port == 9000


@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [
        ("LONGRANK_PORT", "70000", "LONGRANK_PORT='70000'"),
        ("LONGRANK_STORE_URL", "postgres://x", "LONGRANK_STORE_URL"),
        ("LONGRANK_MAX_CANDIDATES", "0", "LONGRANK_MAX_CANDIDATES"),
        ("LONGRANK_ACTIONS", "[300]", "LONGRANK_ACTIONS"),
    ],
)
def test_bad_variable_is_named(monkeypatch: pytest.MonkeyPatch, name: str, value: str, needle: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=needle):
        load_settings()


def test_the_hardening_settings_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"LONGRANK_LOG_LEVEL": "WARNING", "LONGRANK_LOG_FORMAT": "text", "LONGRANK_ACCESS_LOG": "false",
                        "LONGRANK_QUEUE_TIMEOUT_S": "0.25", "LONGRANK_DATA_TOKEN": "dt", "LONGRANK_DOCS_ENABLED": "0",
                        "LONGRANK_STORE_PASSWORD": "pw", "LONGRANK_BODY_TIMEOUT_S": "3"}.items():
        monkeypatch.setenv(name, value)
    s = load_settings()
    assert (s.log_level, s.log_format, s.access_log, s.queue_timeout_s, s.docs_enabled, s.body_timeout_s) == (
        "warning", "text", False, 0.25, False, 3.0)
    assert s.data_token is not None and s.data_token.get_secret_value() == "dt"
    assert s.store_options().password == "pw" and "pw" not in repr(s) and "pw" not in repr(s.store_options())
    assert s.store_options().retries == 1 and s.store_options(timeout_s=0.05).retries == 0  # none in the budget
    monkeypatch.setenv("LONGRANK_LOG_FORMAT", "xml")
    with pytest.raises(SettingsError, match="LONGRANK_LOG_FORMAT"):
        load_settings()
