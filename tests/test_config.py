"""Tests for botdb.config: URL parsing, the environment precedence, validation, masking, SSL."""

from __future__ import annotations

import dataclasses
import os
import ssl
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy.engine import make_url

from botdb.config import DatabaseURL, Settings
from botdb.errors import ConfigurationError

SECRET = "s3cr%40t"  # decodes to "s3cr@t"; no output may contain "s3cr" in any form
PG_URL = f"postgresql://bot:{SECRET}@db.example:5432/botdb"
LEGACY_NAMES = frozenset(
    {"TEST_MODE", "USE_SQLITE", "DATABASE_PATH", "DATABASE_URL", "DATABASE_PUBLIC_URL", "PGHOST"}
    | {"PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE", "PGSSLMODE", "DB_HOST", "DB_PORT"}
    | {"DB_USER", "DB_PASSWORD", "DB_NAME"}
)


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert "s3cr" not in text, text


def full_error_text(exc: BaseException) -> str:
    """Message and repr of the error and of every exception chained to it."""
    texts: list[str] = []
    current: BaseException | None = exc
    while current is not None:
        texts += [*traceback.format_exception_only(current), repr(current)]
        current = current.__cause__ or current.__context__
    return "\n".join(texts)


@pytest.fixture
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """os.environ without any variable botdb reads, so tests see only what they set."""
    for name in list(os.environ):
        if name.startswith("BOTDB_") or name in LEGACY_NAMES:
            monkeypatch.delenv(name)
    return monkeypatch


# --- DatabaseURL.parse: accepted forms --------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "path", "is_memory"),
    [
        ("sqlite:///relative/bot.db", "relative/bot.db", False),
        ("sqlite:////abs/path/bot.db", "/abs/path/bot.db", False),
        ("sqlite:///:memory:", ":memory:", True),
        ("sqlite://", "", True),
        ("sqlite+aiosqlite:///relative/bot.db", "relative/bot.db", False),
        ("SQLite:///bot.db", "bot.db", False),
    ],
)
def test_sqlite_urls_parse_to_path_and_memory_flag(url: str, path: str, is_memory: bool) -> None:
    parsed = DatabaseURL.parse(url)
    assert (parsed.backend, parsed.path, parsed.is_memory) == ("sqlite", path, is_memory)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///relative/bot.db", "sqlite+aiosqlite:///relative/bot.db"),
        ("sqlite:////abs/path/bot.db", "sqlite+aiosqlite:////abs/path/bot.db"),
        ("sqlite://", "sqlite+aiosqlite:///:memory:"),
        ("sqlite+aiosqlite:///:memory:", "sqlite+aiosqlite:///:memory:"),
    ],
)
def test_sqlite_sqlalchemy_url_uses_aiosqlite(url: str, expected: str) -> None:
    assert DatabaseURL.parse(url).sqlalchemy_url() == expected


def test_sqlite_url_has_no_asyncpg_dsn() -> None:
    with pytest.raises(ConfigurationError, match="not a PostgreSQL URL"):
        DatabaseURL.parse("sqlite:///bot.db").asyncpg_dsn()


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+asyncpg", "POSTGRES"])
def test_postgresql_schemes_parse_to_the_same_parts(scheme: str) -> None:
    parsed = DatabaseURL.parse(f"{scheme}://bot:pw@db.example:6432/botdb?sslmode=require")
    assert parsed == DatabaseURL(
        backend="postgresql",
        host="db.example",
        port=6432,
        user="bot",
        password="pw",
        database="botdb",
        query={"sslmode": "require"},
    )
    assert parsed.sqlalchemy_url() == "postgresql+asyncpg://bot:pw@db.example:6432/botdb"
    assert parsed.asyncpg_dsn() == "postgresql://bot:pw@db.example:6432/botdb?sslmode=require"


def test_postgresql_url_without_user_or_port_keeps_them_empty() -> None:
    parsed = DatabaseURL.parse("postgresql://localhost/botdb")
    assert (parsed.host, parsed.port, parsed.user, parsed.password) == ("localhost", None, "", "")
    assert parsed.asyncpg_dsn() == "postgresql://localhost/botdb"


def test_ipv6_host_round_trips_with_brackets() -> None:
    parsed = DatabaseURL.parse("postgresql://bot@[::1]:5433/botdb")
    assert (parsed.host, parsed.port) == ("::1", 5433)
    assert parsed.asyncpg_dsn() == "postgresql://bot@[::1]:5433/botdb"


def test_unix_socket_host_in_query_is_kept_for_both_drivers() -> None:
    parsed = DatabaseURL.parse("postgresql://bot@/botdb?host=/var/run/postgresql&port=5433")
    assert (parsed.host, parsed.port, parsed.query) == ("/var/run/postgresql", 5433, {})
    sa_url = make_url(parsed.sqlalchemy_url())
    assert sa_url.query["host"] == "/var/run/postgresql"
    assert sa_url.database == "botdb"
    assert "host=/var/run/postgresql" in parsed.asyncpg_dsn()


def test_sqlalchemy_url_drops_query_params_asyncpg_rejects_but_dsn_keeps_them() -> None:
    parsed = DatabaseURL.parse(
        "postgresql://bot@db/botdb?sslmode=verify-full&sslrootcert=/ca.pem"
        "&application_name=mybot&target_session_attrs=read-write&connect_timeout=5"
    )
    assert make_url(parsed.sqlalchemy_url()).query == {"target_session_attrs": "read-write"}
    dsn = parsed.asyncpg_dsn()
    assert "sslmode=verify-full" in dsn
    assert "application_name=mybot" in dsn
    assert "connect_timeout" not in dsn  # libpq-only: asyncpg would send it as a server setting


@pytest.mark.parametrize("password", ["s3cr@t", "p:ss/w?rd#%&=+ é", "%40"])
def test_escaped_passwords_decode_and_round_trip(password: str) -> None:
    from urllib.parse import quote, urlsplit

    parsed = DatabaseURL.parse(f"postgresql://bot:{quote(password, safe='')}@db:5432/botdb")
    assert parsed.password == password
    assert make_url(parsed.sqlalchemy_url()).password == password
    assert DatabaseURL.parse(parsed.asyncpg_dsn()) == parsed
    split = urlsplit(parsed.asyncpg_dsn())
    assert (split.hostname, split.port, split.path) == ("db", 5432, "/botdb")


def test_escaped_user_and_database_names_decode() -> None:
    parsed = DatabaseURL.parse("postgresql://my%20bot@db/bot%2Ddb")
    assert (parsed.user, parsed.database) == ("my bot", "bot-db")
    assert make_url(parsed.sqlalchemy_url()).username == "my bot"


def test_credentials_given_in_the_query_are_folded_into_the_url() -> None:
    parsed = DatabaseURL.parse("postgresql:///?dbname=botdb&user=bot&password=pw&host=db")
    assert (parsed.host, parsed.user, parsed.password, parsed.database) == (
        "db",
        "bot",
        "pw",
        "botdb",
    )
    assert parsed.query == {}


# --- DatabaseURL.parse: rejections ------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("mysql://user:pw@localhost/db", "unsupported database URL scheme 'mysql'"),
        ("http://example.com/db", "unsupported database URL scheme 'http'"),
        ("redis://localhost:6379/0", "unsupported database URL scheme 'redis'"),
        ("bot.db", "malformed"),
        ("postgresql+psycopg://user@localhost/db", "asyncpg"),
        ("postgresql+psycopg2://user@localhost/db", "asyncpg"),
        ("sqlite://hostname/bot.db", "malformed SQLite URL"),
        ("postgresql://user@localhost:5432", "database name"),
        ("postgresql://user@localhost/", "database name"),
        ("postgresql://user@localhost/a/b", "database name"),
        ("postgresql://user@h1,h2/db", "multiple hosts"),
        ("postgresql://user@localhost/db?host=other", "host twice"),
    ],
)
def test_bad_urls_raise_configuration_error(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        DatabaseURL.parse(url)


@pytest.mark.parametrize("port", ["abc", "0", "65536", "-1", "54 32", "5432x"])
def test_malformed_ports_raise_configuration_error(port: str) -> None:
    with pytest.raises(ConfigurationError, match="invalid port"):
        DatabaseURL.parse(f"postgresql://user@localhost:{port}/db")


@pytest.mark.parametrize(
    "url", ["postgresql://bot:Pa55wordx9/bot", "postgres://bot:Pa55wordx9/bot?sslmode=disable"]
)
def test_a_password_read_as_the_port_is_not_echoed(url: str) -> None:
    """The host forgotten, the password sits where the port goes: the error must not show it."""
    with pytest.raises(ConfigurationError, match="invalid port") as caught:
        DatabaseURL.parse(url)
    assert "Pa55wordx9" not in str(caught.value)
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env(url=url)
    assert "Pa55wordx9" not in str(caught.value)


def test_unknown_scheme_given_to_settings_raises_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="mysql"):
        Settings(database_url="mysql://root@localhost/db")


# --- Masking ----------------------------------------------------------------------------------


def test_password_never_appears_in_str_repr_or_masked() -> None:
    parsed = DatabaseURL.parse(PG_URL)
    assert parsed.masked() == "postgresql://bot:***@db.example:5432/botdb"
    assert str(parsed) == parsed.masked()
    assert repr(parsed) == "DatabaseURL('postgresql://bot:***@db.example:5432/botdb')"
    settings = Settings(database_url=PG_URL, redis_url=f"redis://:{SECRET}@cache:6379/0")
    assert_no_secret(str(settings), repr(settings), str(settings.url), f"{settings.url!r}")
    assert "postgresql://bot:***@db.example:5432/botdb" in repr(settings)
    assert "redis://:***@cache:6379/0" in repr(settings)


def test_secret_query_values_are_masked() -> None:
    parsed = DatabaseURL.parse(f"postgresql://bot@db/botdb?sslpassword={SECRET}&password={SECRET}")
    assert parsed.password == "s3cr@t"
    assert_no_secret(parsed.masked(), repr(parsed))
    assert "sslpassword=***" in parsed.masked()


@pytest.mark.parametrize(
    "make",
    [
        lambda: Settings(database_url=f"mysql://bot:{SECRET}@db/botdb"),
        lambda: Settings(database_url=f"postgresql://bot:{SECRET}@db:abc/botdb"),
        lambda: Settings(database_url=f"postgresql://bot:{SECRET}@db:5432"),
        lambda: Settings(database_url=f"postgresql+psycopg://bot:{SECRET}@db/botdb"),
        lambda: Settings(database_url="postgresql://bot:s3cr/t@db/botdb"),  # unescaped "/"
        lambda: Settings(database_url=PG_URL, pool_max_size="many"),
        lambda: Settings(database_url=f"mysql://bot:{SECRET}@db/botdb", pool_max_size="many"),
        lambda: Settings(redis_url=f"http://:{SECRET}@cache"),
        lambda: Settings(redis_url=12),
        lambda: Settings.from_env(environ={"DATABASE_URL": f"mysql://bot:{SECRET}@db/botdb"}),
        lambda: Settings.from_env(
            environ={"PGHOST": "db", "PGPORT": "nope", "PGUSER": "bot", "PGPASSWORD": "s3cr@t"}
        ),
    ],
)
def test_configuration_errors_never_echo_the_password(make: Callable[[], Settings]) -> None:
    with pytest.raises(ConfigurationError) as info:
        make()
    assert_no_secret(full_error_text(info.value))


def test_validation_error_is_translated_with_field_value_and_cause() -> None:
    with pytest.raises(ConfigurationError) as info:
        Settings(pool_max_size="many")
    message = str(info.value)
    assert "pool_max_size" in message
    assert "BOTDB_POOL_MAX_SIZE" in message
    assert "'many'" in message
    assert isinstance(info.value.__cause__, ValidationError)


def test_url_field_errors_show_the_masked_value() -> None:
    with pytest.raises(ConfigurationError) as info:
        Settings(database_url=f"postgresql://bot:{SECRET}@db/botdb", retry_attempts=0)
    assert "retry_attempts" in str(info.value)
    assert_no_secret(full_error_text(info.value))


# --- Settings: defaults and validation --------------------------------------------------------


def test_defaults_match_the_documented_values(clean_environ: pytest.MonkeyPatch) -> None:
    settings = Settings()
    assert settings.database_url == "sqlite:///bot.db"
    assert settings.backend == "sqlite"
    assert (settings.pool_min_size, settings.pool_max_size) == (1, 10)
    assert settings.pool_pre_ping is True
    assert settings.pgbouncer is False
    assert settings.command_timeout is None
    assert settings.ssl_mode == "prefer"
    assert settings.retry_attempts == 3
    assert settings.redis_url is None


def test_settings_are_frozen_and_url_is_parsed_once() -> None:
    settings = Settings(database_url=PG_URL)
    assert settings.url is settings.url
    assert settings.backend == "postgresql"
    with pytest.raises(ValidationError, match="frozen"):
        settings.pool_max_size = 3  # type: ignore[misc]


def test_settings_reject_positional_and_private_arguments() -> None:
    with pytest.raises(TypeError, match="keyword"):
        Settings("sqlite:///bot.db")  # type: ignore[misc]
    with pytest.raises(TypeError, match="from_env"):
        Settings(_env_file=".env")  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"pool_min_size": -1}, "pool_min_size"),
        ({"pool_max_size": 0}, "pool_max_size"),
        ({"pool_max_size": "ten"}, "pool_max_size"),
        ({"pool_acquire_timeout": 0}, "pool_acquire_timeout"),
        ({"command_timeout": -5}, "command_timeout"),
        ({"retry_attempts": 0}, "retry_attempts"),
        ({"retry_jitter": -0.1}, "retry_jitter"),
        ({"slow_query_ms": "slow"}, "slow_query_ms"),
        ({"cache_max_size": -1}, "cache_max_size"),
        ({"ssl_mode": "sometimes"}, "ssl_mode"),
        ({"application_name": "x" * 64}, "application_name"),
    ],
)
def test_invalid_numbers_and_choices_raise_configuration_error_naming_the_field(
    overrides: dict[str, Any], field: str
) -> None:
    with pytest.raises(ConfigurationError, match=field):
        Settings(**overrides)


def test_pool_max_size_below_min_is_rejected() -> None:
    with pytest.raises(ConfigurationError, match="pool_max_size=2 is below pool_min_size=5"):
        Settings(pool_min_size=5, pool_max_size=2)


def test_retry_max_delay_below_initial_delay_is_rejected() -> None:
    with pytest.raises(ConfigurationError, match="retry_max_delay"):
        Settings(retry_initial_delay=3.0, retry_max_delay=1.0)


def test_unknown_setting_is_rejected_by_name() -> None:
    with pytest.raises(ConfigurationError, match="unknown setting 'pool_size'"):
        Settings.from_env(environ={}, pool_size=5)


def test_redis_url_must_be_a_redis_url() -> None:
    assert Settings(redis_url="rediss://cache:6380/1").redis_url == "rediss://cache:6380/1"
    with pytest.raises(ConfigurationError, match="redis_url"):
        Settings(redis_url="memcached://cache")


def test_pgbouncer_defaults_to_off_and_reads_the_environment() -> None:
    assert Settings.from_env(environ={}).pgbouncer is False
    assert Settings.from_env(environ={"BOTDB_PGBOUNCER": "on"}).pgbouncer is True


# --- Booleans ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        *[("true", True), ("TRUE", True), ("1", True), ("yes", True), ("On", True)],
        *[("false", False), ("False", False), ("0", False), ("no", False), ("OFF", False)],
    ],
)
def test_boolean_spellings_are_accepted(raw: str, expected: bool) -> None:
    assert Settings.from_env(environ={"BOTDB_LOG_QUERIES": raw}).log_queries is expected
    assert Settings.from_env(environ={}, log_queries=raw).log_queries is expected
    memory = Settings.from_env(environ={"TEST_MODE": raw}).url.is_memory
    assert memory is expected


@pytest.mark.parametrize("raw", ["maybe", "2", "y", "t", "enabled"])
@pytest.mark.parametrize("variable", ["BOTDB_LOG_QUERIES", "BOTDB_POOL_PRE_PING", "TEST_MODE"])
def test_bad_booleans_raise_configuration_error_naming_the_variable(
    variable: str, raw: str
) -> None:
    with pytest.raises(ConfigurationError, match=variable):
        Settings.from_env(environ={variable: raw})


def test_bad_boolean_keyword_raises_configuration_error_naming_the_field() -> None:
    with pytest.raises(ConfigurationError, match="pool_pre_ping"):
        Settings(pool_pre_ping="maybe")


def test_bad_use_sqlite_raises_naming_the_variable() -> None:
    with pytest.raises(ConfigurationError, match="USE_SQLITE"):
        Settings.from_env(environ={"USE_SQLITE": "sure"})


# --- BOTDB_<FIELD> environment ----------------------------------------------------------------


def test_every_field_is_read_from_botdb_prefixed_variables(tmp_path: Path) -> None:
    environ = {
        "BOTDB_DATABASE_URL": "postgresql://bot@db/botdb",
        "BOTDB_POOL_MAX_SIZE": "25",
        "BOTDB_POOL_ACQUIRE_TIMEOUT": "2.5",
        "BOTDB_COMMAND_TIMEOUT": "none",
        "BOTDB_SSL_MODE": "require",
        "BOTDB_SSL_CA_FILE": str(tmp_path / "ca.pem"),
        "BOTDB_SLOW_QUERY_MS": "125",
        "BOTDB_REDIS_URL": "redis://cache:6379/2",
        "BOTDB_APPLICATION_NAME": "mybot",
    }
    settings = Settings.from_env(environ=environ)
    assert settings.backend == "postgresql"
    assert settings.pool_max_size == 25
    assert settings.pool_acquire_timeout == 2.5
    assert settings.command_timeout is None
    assert settings.ssl_mode == "require"
    assert settings.ssl_ca_file == tmp_path / "ca.pem"
    assert settings.slow_query_ms == 125.0
    assert settings.redis_url == "redis://cache:6379/2"
    assert settings.application_name == "mybot"


def test_empty_variables_count_as_unset() -> None:
    settings = Settings.from_env(environ={"BOTDB_POOL_MAX_SIZE": "", "DATABASE_URL": "  "})
    assert (settings.pool_max_size, settings.database_url) == (10, "sqlite:///bot.db")


def test_bad_numeric_variable_names_field_and_variable() -> None:
    with pytest.raises(ConfigurationError, match="BOTDB_POOL_MAX_SIZE") as info:
        Settings.from_env(environ={"BOTDB_POOL_MAX_SIZE": "lots"})
    assert "'lots'" in str(info.value)


def test_keyword_override_beats_the_environment_for_its_field() -> None:
    environ = {"BOTDB_POOL_MAX_SIZE": "7", "BOTDB_SLOW_QUERY_MS": "9"}
    settings = Settings.from_env(environ=environ, pool_max_size=3)
    assert (settings.pool_max_size, settings.slow_query_ms) == (3, 9.0)


def test_keyword_override_hides_an_invalid_variable_for_its_field() -> None:
    settings = Settings.from_env(environ={"BOTDB_POOL_MAX_SIZE": "lots"}, pool_max_size=3)
    assert settings.pool_max_size == 3


def test_from_env_with_environ_ignores_the_process_environment(
    clean_environ: pytest.MonkeyPatch,
) -> None:
    clean_environ.setenv("BOTDB_POOL_MAX_SIZE", "7")
    clean_environ.setenv("DATABASE_URL", "postgresql://bot@db/botdb")
    settings = Settings.from_env(environ={})
    assert (settings.pool_max_size, settings.backend) == (10, "sqlite")


def test_settings_and_from_env_read_the_process_environment(
    clean_environ: pytest.MonkeyPatch,
) -> None:
    clean_environ.setenv("BOTDB_POOL_MAX_SIZE", "7")
    clean_environ.setenv("DATABASE_URL", "postgresql://bot@db/botdb")
    for settings in (Settings(), Settings.from_env()):
        assert (settings.pool_max_size, settings.backend) == (7, "postgresql")
    assert Settings(database_url="sqlite://").url.is_memory


def test_env_file_is_read_only_when_given_and_ranks_below_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("BOTDB_POOL_MAX_SIZE=4\nDATABASE_URL=postgresql://bot@db/botdb\n")
    monkeypatch.chdir(tmp_path)
    assert Settings.from_env(environ={}).pool_max_size == 10
    from_file = Settings.from_env(environ={}, env_file=env_file)
    assert (from_file.pool_max_size, from_file.backend) == (4, "postgresql")
    env_wins = Settings.from_env(environ={"BOTDB_POOL_MAX_SIZE": "6"}, env_file=env_file)
    assert env_wins.pool_max_size == 6


def test_missing_env_file_raises_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        Settings.from_env(environ={}, env_file=tmp_path / "missing.env")


# --- Database URL precedence ------------------------------------------------------------------

Expected = Callable[[Mapping[str, str]], str]
# (name, variables, expected URL given the merged environment), highest precedence first.
STEPS: list[tuple[str, dict[str, str], Expected]] = [
    (
        "BOTDB_DATABASE_URL",
        {"BOTDB_DATABASE_URL": "postgresql://botdb@h2/d2"},
        lambda env: "postgresql://botdb@h2/d2",
    ),
    ("TEST_MODE", {"TEST_MODE": "true"}, lambda env: "sqlite:///:memory:"),
    (
        "USE_SQLITE",
        {"USE_SQLITE": "yes"},
        lambda env: "sqlite:///" + env.get("DATABASE_PATH", "bot.db"),
    ),
    ("DATABASE_URL", {"DATABASE_URL": "postgres://u5@h5/d5"}, lambda env: "postgresql://u5@h5/d5"),
    (
        "DATABASE_PUBLIC_URL",
        {"DATABASE_PUBLIC_URL": "postgresql://u6@h6:6543/d6"},
        lambda env: "postgresql://u6@h6:6543/d6",
    ),
    (
        "PGHOST",
        {"PGHOST": "h7", "PGPORT": "5433", "PGUSER": "u7", "PGPASSWORD": "p@7", "PGDATABASE": "d7"},
        lambda env: "postgresql://u7:p%407@h7:5433/d7",
    ),
    (
        "DB_HOST",
        {
            "DB_HOST": "h8",
            "DB_PORT": "5434",
            "DB_USER": "u8",
            "DB_PASSWORD": "p:8",
            "DB_NAME": "d8",
        },
        lambda env: "postgresql://u8:p%3A8@h8:5434/d8",
    ),
    ("DATABASE_PATH", {"DATABASE_PATH": "data/legacy.db"}, lambda env: "sqlite:///data/legacy.db"),
]
PAIRS = [(i, j) for i in range(len(STEPS)) for j in range(i + 1, len(STEPS))]


def resolved(environ: Mapping[str, str], **overrides: Any) -> DatabaseURL:
    return Settings.from_env(environ=environ, **overrides).url


@pytest.mark.parametrize("step", range(len(STEPS)), ids=[s[0] for s in STEPS])
def test_each_precedence_step_alone_gives_its_url(step: int) -> None:
    _, variables, expected = STEPS[step]
    assert resolved(variables) == DatabaseURL.parse(expected(variables))


@pytest.mark.parametrize("step", range(len(STEPS)), ids=[s[0] for s in STEPS])
def test_each_precedence_step_beats_all_lower_steps_together(step: int) -> None:
    merged: dict[str, str] = {}
    for _, variables, _ in STEPS[step:]:
        merged |= variables
    assert resolved(merged) == DatabaseURL.parse(STEPS[step][2](merged))


@pytest.mark.parametrize(
    ("high", "low"), PAIRS, ids=[f"{STEPS[i][0]}>{STEPS[j][0]}" for i, j in PAIRS]
)
def test_each_precedence_step_beats_every_lower_step(high: int, low: int) -> None:
    merged = STEPS[high][1] | STEPS[low][1]
    assert resolved(merged) == DatabaseURL.parse(STEPS[high][2](merged))


def test_default_is_bot_db_file_when_nothing_is_set() -> None:
    assert resolved({"UNRELATED": "1"}) == DatabaseURL.parse("sqlite:///bot.db")


def test_keyword_url_beats_every_environment_step(clean_environ: pytest.MonkeyPatch) -> None:
    merged: dict[str, str] = {}
    for _, variables, _ in STEPS:
        merged |= variables
    keyword = "postgresql://kw@h1/d1"
    assert resolved(merged, url=keyword) == DatabaseURL.parse(keyword)
    assert resolved(merged, database_url=keyword) == DatabaseURL.parse(keyword)
    for name, value in merged.items():
        clean_environ.setenv(name, value)
    assert Settings(database_url=keyword).url == DatabaseURL.parse(keyword)
    assert Settings.from_env(keyword).url == DatabaseURL.parse(keyword)


def test_url_and_database_url_keywords_must_agree() -> None:
    with pytest.raises(ConfigurationError, match="once"):
        Settings.from_env("sqlite://", environ={}, database_url="sqlite:///bot.db")


def test_false_flags_fall_through_to_the_next_step() -> None:
    environ = {"TEST_MODE": "false", "USE_SQLITE": "0", "DATABASE_URL": "postgresql://u@h/d"}
    assert resolved(environ) == DatabaseURL.parse("postgresql://u@h/d")


def test_use_sqlite_with_absolute_database_path() -> None:
    assert resolved({"USE_SQLITE": "1", "DATABASE_PATH": "/data/bot.db"}).path == "/data/bot.db"


def test_lower_steps_are_not_consulted_once_a_higher_one_is_set() -> None:
    environ = {"DATABASE_URL": "postgresql://u@h/d", "PGPORT": "not-a-port", "PGHOST": "h"}
    assert resolved(environ) == DatabaseURL.parse("postgresql://u@h/d")


def test_libpq_variables_default_the_database_to_the_user() -> None:
    assert resolved({"PGHOST": "h", "PGUSER": "bot"}).database == "bot"
    with pytest.raises(ConfigurationError, match="DB_NAME"):
        resolved({"DB_HOST": "h"})


def test_pghost_unix_socket_and_pgsslmode_are_kept() -> None:
    url = resolved({"PGHOST": "/var/run/postgresql", "PGDATABASE": "d", "PGSSLMODE": "disable"})
    assert (url.host, url.query) == ("/var/run/postgresql", {"sslmode": "disable"})
    assert make_url(url.sqlalchemy_url()).query["host"] == "/var/run/postgresql"


def test_bad_port_variable_is_named() -> None:
    with pytest.raises(ConfigurationError, match="DB_PORT"):
        resolved({"DB_HOST": "h", "DB_PORT": "x", "DB_NAME": "d"})


def test_bad_url_from_a_variable_names_that_variable() -> None:
    with pytest.raises(ConfigurationError, match=r"^DATABASE_PUBLIC_URL: .*mysql"):
        resolved({"DATABASE_PUBLIC_URL": "mysql://u@h/d"})


# --- SSL --------------------------------------------------------------------------------------


@pytest.fixture
def ca_file(tmp_path: Path) -> Path:
    """A CA certificate file: a throwaway CA made with cryptography, else the system bundle."""
    try:
        import datetime

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        system = ssl.get_default_verify_paths().cafile
        if system is None or not Path(system).is_file():
            pytest.skip("needs cryptography or a system CA bundle to build a CA file")
        return Path(system)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "botdb test CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = tmp_path / "ca.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def test_ssl_context_is_none_for_sqlite() -> None:
    assert Settings(database_url="sqlite://", ssl_mode="verify-full").ssl_context() is None


@pytest.mark.parametrize(("mode", "expected"), [("disable", False), ("allow", "allow")])
def test_ssl_context_for_non_verifying_modes(mode: str, expected: object) -> None:
    assert Settings(database_url=PG_URL, ssl_mode=mode).ssl_context() == expected


def test_ssl_context_defaults_to_prefer() -> None:
    assert Settings(database_url=PG_URL).ssl_context() == "prefer"


def test_ssl_require_encrypts_without_verifying() -> None:
    context = Settings(database_url=PG_URL, ssl_mode="require").ssl_context()
    assert isinstance(context, ssl.SSLContext)
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_NONE, False)


@pytest.mark.parametrize(("mode", "check_hostname"), [("verify-ca", False), ("verify-full", True)])
def test_ssl_verify_modes_load_the_ca_file(mode: str, check_hostname: bool, ca_file: Path) -> None:
    context = Settings(database_url=PG_URL, ssl_mode=mode, ssl_ca_file=ca_file).ssl_context()
    assert isinstance(context, ssl.SSLContext)
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_REQUIRED, check_hostname)
    assert context.get_ca_certs()


def test_ssl_require_with_a_ca_file_verifies_the_chain(ca_file: Path) -> None:
    context = Settings(database_url=PG_URL, ssl_mode="require", ssl_ca_file=ca_file).ssl_context()
    assert isinstance(context, ssl.SSLContext)
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_REQUIRED, False)


def test_ssl_verify_full_without_ca_file_uses_the_system_store() -> None:
    context = Settings(database_url=PG_URL, ssl_mode="verify-full").ssl_context()
    assert isinstance(context, ssl.SSLContext)
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_REQUIRED, True)


@pytest.mark.parametrize("mode", ["verify-ca", "verify-full"])
def test_missing_ca_file_raises_configuration_error(mode: str, tmp_path: Path) -> None:
    settings = Settings(database_url=PG_URL, ssl_mode=mode, ssl_ca_file=tmp_path / "nope.pem")
    with pytest.raises(ConfigurationError, match="does not exist"):
        settings.ssl_context()


def test_invalid_ca_file_raises_configuration_error_with_cause(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    settings = Settings(database_url=PG_URL, ssl_mode="verify-ca", ssl_ca_file=bad)
    with pytest.raises(ConfigurationError, match="cannot load") as info:
        settings.ssl_context()
    assert isinstance(info.value.__cause__, ssl.SSLError)


def test_url_sslmode_is_used_when_ssl_mode_is_not_given() -> None:
    url = "postgresql://bot@db/botdb?sslmode=disable"
    assert Settings(database_url=url).ssl_context() is False
    assert Settings.from_env(environ={"DATABASE_URL": url}).ssl_context() is False
    explicit = Settings(database_url=url, ssl_mode="prefer").ssl_context()
    assert explicit == "prefer"
    from_env = Settings.from_env(environ={"DATABASE_URL": url, "BOTDB_SSL_MODE": "allow"})
    assert from_env.ssl_context() == "allow"


def test_url_sslrootcert_is_used_as_the_ca_file(tmp_path: Path) -> None:
    missing = tmp_path / "root.crt"
    settings = Settings(
        database_url=f"postgresql://bot@db/botdb?sslmode=verify-ca&sslrootcert={missing}"
    )
    with pytest.raises(ConfigurationError, match=r"root\.crt"):
        settings.ssl_context()


def test_invalid_sslmode_in_url_is_rejected() -> None:
    with pytest.raises(ConfigurationError, match="sslmode"):
        Settings(database_url="postgresql://bot@db/botdb?sslmode=sometimes")


# --- Against the real PostgreSQL server -------------------------------------------------------


@pytest.fixture
def pg_with_secret(pg_url: str) -> DatabaseURL:
    """The test database's URL with an escaped password and libpq-style query parameters."""
    parsed = DatabaseURL.parse(pg_url)
    query = {"sslmode": "disable", "application_name": "botdb-config-test", "connect_timeout": "5"}
    return dataclasses.replace(parsed, password="s3cr@t", query=query)


@pytest.mark.postgres
async def test_asyncpg_dsn_connects_to_the_real_server(pg_with_secret: DatabaseURL) -> None:
    import asyncpg

    settings = Settings(database_url=pg_with_secret.asyncpg_dsn())
    conn = await asyncpg.connect(settings.url.asyncpg_dsn(), ssl=settings.ssl_context(), timeout=5)
    try:
        row = await conn.fetchrow("SELECT current_database(), current_setting('application_name')")
    finally:
        await conn.close()
    assert row is not None
    assert tuple(row) == (pg_with_secret.database, "botdb-config-test")


@pytest.mark.postgres
async def test_sqlalchemy_url_connects_to_the_real_server(pg_with_secret: DatabaseURL) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    settings = Settings(database_url=pg_with_secret.asyncpg_dsn())
    engine = create_async_engine(
        settings.url.sqlalchemy_url(), connect_args={"ssl": settings.ssl_context()}
    )
    try:
        async with engine.connect() as conn:
            name = (await conn.execute(text("SELECT current_database()"))).scalar_one()
    finally:
        await engine.dispose()
    assert name == pg_with_secret.database
