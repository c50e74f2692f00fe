"""botdb's configuration: the only module that reads the environment.

:class:`Settings` is a frozen, keyword-only, validated object. ``Settings(...)`` and
:meth:`Settings.from_env` read ``os.environ``; ``Settings.from_env(environ={...})`` reads the
given mapping instead. Every field ``<field>`` is also read from ``BOTDB_<FIELD>`` (for example
``BOTDB_POOL_MAX_SIZE``); a keyword argument beats the environment for its field. Empty
variables count as unset; ``none`` or ``null`` unsets a field that accepts ``None``. A ``.env``
file is read only when passed as ``from_env(env_file=...)``, below the real environment.

The database URL comes from the first of these that is set (highest first):

| step | source | gives |
|---|---|---|
| 1 | keyword `database_url=` (`Settings(...)`, `from_env(...)`) or `from_env(url=...)` | that URL |
| 2 | `BOTDB_DATABASE_URL` | that URL |
| 3 | `TEST_MODE` true | `sqlite:///:memory:` |
| 4 | `USE_SQLITE` true | `sqlite:///` + (`DATABASE_PATH` or `bot.db`) |
| 5 | `DATABASE_URL` | that URL |
| 6 | `DATABASE_PUBLIC_URL` (Railway) | that URL |
| 7 | `PGHOST` + `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE` | `postgresql://…` |
| 8 | `DB_HOST` + `DB_PORT`, `DB_USER`, `DB_PASSWORD`, `DB_NAME` | `postgresql://…` |
| 9 | `DATABASE_PATH` alone | `sqlite:///` + that path |
| 10 | nothing set | `sqlite:///bot.db` |

In steps 7 and 8 the database name defaults to the user name, as in libpq; a unix-socket
directory as host (`PGHOST=/var/run/postgresql`) is kept; `PGSSLMODE` becomes `?sslmode=`.

Booleans (``TEST_MODE``, ``USE_SQLITE``, ``BOTDB_PGBOUNCER``…) accept true/false, 1/0, yes/no
and on/off in any case; anything else raises :class:`~botdb.errors.ConfigurationError` naming
the variable. Every invalid value raises ``ConfigurationError`` naming the field, with the
pydantic error chained as ``__cause__``; passwords never appear in messages, ``str`` or ``repr``.

:class:`DatabaseURL` (the parsed URL) lives in the private ``botdb._url`` and is re-exported here.

Example:
    >>> Settings(database_url="postgres://bot:s3cr%40t@db:5432/bot").url.masked()
    'postgresql://bot:***@db:5432/bot'
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

from pydantic import (
    BeforeValidator,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from botdb._url import BackendName, DatabaseURL, mask_text, parse_port
from botdb.errors import ConfigurationError

__all__ = ["BackendName", "DatabaseURL", "SSLMode", "Settings"]

SSLMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]

# The mapping from_env() reads instead of os.environ, for the duration of one construction.
_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("botdb_environ", default=None)
_PG_VARIABLES = ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE")
_DB_VARIABLES = ("DB_HOST", "DB_PORT", "DB_USER", "DB_PASSWORD", "DB_NAME")
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


def _to_bool(value: Any) -> Any:
    """Strings spelling a boolean (true/false, 1/0, yes/no, on/off, any case) become bools."""
    if isinstance(value, str):
        if value.strip().lower() not in _TRUE | _FALSE:
            raise ValueError("not a boolean: use true/false, 1/0, yes/no or on/off")
        return value.strip().lower() in _TRUE
    return value


def _parse_bool(name: str, raw: str) -> bool:
    try:
        return bool(_to_bool(raw))
    except ValueError as exc:
        raise ConfigurationError(f"{name}={raw!r} is {exc}") from exc


_Bool = Annotated[bool, BeforeValidator(_to_bool)]


def _to_url_list(value: Any) -> Any:
    """A comma-separated string (``BOTDB_REPLICA_URLS``) becomes a tuple of URLs."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


_URLList = Annotated[tuple[str, ...], BeforeValidator(_to_url_list)]


def _postgres_from_parts(environ: Mapping[str, str], names: tuple[str, ...]) -> str:
    host_var, port_var, user_var, password_var, db_var = names
    port_text = environ.get(port_var, "").strip()
    user = environ.get(user_var, "")
    database = environ.get(db_var, "") or user
    if not database:
        raise ConfigurationError(f"{host_var} is set but {db_var} is not: name the database")
    query = {"sslmode": mode} if host_var == "PGHOST" and (mode := environ.get("PGSSLMODE")) else {}
    port = parse_port(port_text, port_var) if port_text else None
    password = environ.get(password_var, "")
    host = environ[host_var]
    return DatabaseURL("postgresql", "", host, port, user, password, database, query).asyncpg_dsn()


def _legacy_database_url(env: Mapping[str, str]) -> tuple[str, str] | None:
    """Steps 3-9 of the precedence table as (variable, URL); empty variables already removed."""
    if "TEST_MODE" in env and _parse_bool("TEST_MODE", env["TEST_MODE"]):
        return "TEST_MODE", "sqlite:///:memory:"
    if "USE_SQLITE" in env and _parse_bool("USE_SQLITE", env["USE_SQLITE"]):
        return "USE_SQLITE", "sqlite:///" + env.get("DATABASE_PATH", "bot.db")
    for name in ("DATABASE_URL", "DATABASE_PUBLIC_URL"):
        if name in env:
            return name, env[name]
    for names in (_PG_VARIABLES, _DB_VARIABLES):
        if names[0] in env:
            return names[0], _postgres_from_parts(env, names)
    if "DATABASE_PATH" in env:
        return "DATABASE_PATH", "sqlite:///" + env["DATABASE_PATH"]
    return None


def _read_environment(environ: Mapping[str, str], skip: Iterable[str]) -> dict[str, Any]:
    """Field values from ``BOTDB_*`` and the legacy names, leaving out the fields in ``skip``."""
    env = {k: v for k, v in environ.items() if v.strip()}  # passwords keep their spaces
    skipped = set(skip)
    values: dict[str, Any] = {}
    for name, info in Settings.model_fields.items():
        value: Any = env.get(variable := f"BOTDB_{name.upper()}")
        if name in skipped or value is None:
            continue
        if info.annotation is bool:
            value = _parse_bool(variable, value)
        elif type(None) in get_args(info.annotation) and value.strip().lower() in ("none", "null"):
            value = None
        values[name] = value
    if "database_url" not in skipped:
        found = _legacy_database_url(env) if "database_url" not in values else None
        source, url = found or ("BOTDB_DATABASE_URL", values.get("database_url"))
        if url is not None:
            try:  # parsed here too, so that the error names the variable the URL came from
                DatabaseURL.parse(url)
            except ConfigurationError as exc:
                raise ConfigurationError(f"{source}: {exc.message}") from exc
            values["database_url"] = url
    return values


class _EnvironmentSource(PydanticBaseSettingsSource):
    """pydantic-settings source implementing the precedence table over ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], skip: set[str]) -> None:
        super().__init__(settings_cls)
        self._skip = skip

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads every field at once

    def __call__(self) -> dict[str, Any]:
        environ = _ENVIRON.get()
        return _read_environment(os.environ if environ is None else environ, self._skip)


def _describe(error: Mapping[str, Any], data: Any) -> str:
    name = str(error["loc"][0]) if error["loc"] else "settings"
    if error["type"] == "extra_forbidden":
        return f"unknown setting {name!r}"
    value = data.get(name) if isinstance(data, Mapping) else None
    shown = mask_text(value) if isinstance(value, str) and name.endswith("_url") else value
    text = repr(shown)
    text = text if len(text) <= 80 else text[:77] + "..."
    return f"{name} (BOTDB_{name.upper()}) = {text}: {error['msg']}"


class Settings(BaseSettings):
    """Validated, immutable botdb configuration. See the module docstring for the precedence.

    Attributes:
        database_url: ``sqlite:///…`` or ``postgresql://…``; parsed as :attr:`url`.
        pool_min_size: connections kept open (PostgreSQL).
        pool_max_size: most connections (PostgreSQL); the reader pool size on SQLite.
        pool_acquire_timeout: seconds to wait for a free connection.
        pool_recycle: seconds after which a connection is replaced (0: never).
        pool_max_inactive_lifetime: seconds an idle connection is kept (0: forever).
        pool_pre_ping: check a connection is alive before handing it out.
        command_timeout: seconds a statement may run (default ``None``: no limit, as in
            asyncpg). PostgreSQL enforces it server-side (``statement_timeout``), which costs
            ~6% of a primary-key lookup on the benchmark machine; pass ``timeout=`` per call
            to bound one statement instead.
        application_name: shown in ``pg_stat_activity``.
        ssl_mode: libpq-style SSL mode; see :meth:`ssl_context`.
        ssl_ca_file: CA certificates for ``verify-ca`` / ``verify-full``.
        pgbouncer: behind pgbouncer in transaction mode: no server-side prepared statements,
            no ``LISTEN`` (the cache and the scheduler poll instead). See ``docs/growing.md``.
        replica_urls: PostgreSQL read replicas (``BOTDB_REPLICA_URLS``, comma-separated).
            Reads outside a transaction go to a healthy replica, everything else to the
            primary (``database_url``). See ``docs/growing.md``.
        replica_read_your_writes: seconds after a write during which the same asyncio task
            reads from the primary, so that it sees its own writes.
        replica_max_lag: seconds of replay lag beyond which a replica is skipped.
        replica_check_interval: seconds between two checks of every replica's lag and
            reachability (one cheap query each).
        sqlite_busy_timeout: seconds SQLite waits on a lock before ``DatabaseBusyError``.
        sqlite_create: create the SQLite file when it does not exist (False: a missing file is
            a ConfigurationError; the read-only ``botdb`` commands use False).
        sqlite_cache_size_mb: SQLite page cache per connection.
        retry_attempts: tries in all for transient errors (1: no retry).
        retry_initial_delay: seconds before the first retry (then doubling).
        retry_max_delay: longest wait between tries.
        retry_jitter: up to this many seconds added at random to each wait.
        resolve_lost_commits: before COMMIT, a PostgreSQL transaction that wrote asks for its
            id (one round trip), so that a COMMIT cut off by a lost connection is resolved
            from the server instead of being reported in doubt. False saves the round trip.
        slow_query_ms: statements slower than this are logged as slow.
        log_queries: log every statement.
        redis_url: ``redis://``/``rediss://``/``unix://`` URL for the shared cache.
        cache_ttl: seconds a cache entry lives.
        cache_max_size: entries kept in the in-process cache.
        cursor_secret: secret that signs keyset-pagination cursors (default: a random secret
            generated once and stored in the database's ``botdb_meta`` table); set it for a
            read-only database user or a read replica.
        migrations_path: your own migration directories, separated like ``PATH``
            (``BOTDB_MIGRATIONS_PATH``); ``db.migrate()`` runs them after the built-in ones.
        cache_prefix: namespace of the cache's Redis keys and invalidation channel; bots that
            share one Redis need different prefixes.
        cache_via_database: carry invalidations through the database as well (PostgreSQL
            ``NOTIFY``; on a SQLite file, the ``botdb_invalidations`` log), so that every
            process hears every committed write even when the writer cannot reach Redis, and
            processes without Redis hear each other. Off for in-memory SQLite and behind
            pgbouncer (which cannot ``LISTEN``). See ``docs/cache.md``.
        cache_poll_interval: SQLite: seconds between two polls of the invalidation log; the
            window in which another process's write reaches this one (~7 us a poll when
            nothing was written).
        recorder_batch_size: events ``db.recorder`` writes per transaction.
        recorder_flush_interval: seconds an event may wait in the recorder's buffer before
            its batch is written, however small.
        recorder_max_buffer: events the recorder keeps in memory (must exceed the batch size).
        recorder_when_full: what ``record()`` does when the buffer is full: ``"spill"`` moves
            the buffer to the spool file (every event kept), ``"wait"`` waits for room.
        recorder_spool_path: the recorder's spool file (default: beside a SQLite file as
            ``<file>.recorder-spool``, else ``.botdb/recorder-<hash of the URL>.spool`` in the
            working directory). Each process needs its own.
        recorder_platform: ``"discord"`` or ``"telegram"``: the platform of the guild and
            user rows the recorder creates bare.
        scheduler_lease: seconds a ``db.scheduler`` worker holds a claimed job before another
            worker may take it again (renewed every third of it while the handler runs).
        scheduler_poll_interval: SQLite file: seconds between two checks (``PRAGMA
            data_version``, not a query) for jobs scheduled by other processes; their wake
            latency. PostgreSQL is woken by ``NOTIFY`` instead.
        scheduler_batch: most jobs a worker claims in one statement.
        scheduler_concurrency: most handlers a worker runs at once (``start()``'s default).
        scheduler_retry_delay: seconds before the first retry of a failed job (then doubling).
        scheduler_retry_max_delay: longest wait between two tries of a failed job.
    """

    model_config = SettingsConfigDict(
        frozen=True, extra="forbid", hide_input_in_errors=True, validate_default=True
    )

    database_url: str = Field(default="sqlite:///bot.db", repr=False)
    # pool (PostgreSQL; SQLite uses pool_max_size for its reader pool)
    pool_min_size: int = Field(default=1, ge=0)
    pool_max_size: int = Field(default=10, ge=1)
    pool_acquire_timeout: float = Field(default=10.0, gt=0)
    pool_recycle: float = Field(default=1800.0, ge=0)
    pool_max_inactive_lifetime: float = Field(default=300.0, ge=0)
    pool_pre_ping: _Bool = True
    command_timeout: float | None = Field(default=None, gt=0)
    application_name: str = Field(default="botdb", max_length=63)
    ssl_mode: SSLMode = "prefer"
    ssl_ca_file: Path | None = None
    pgbouncer: _Bool = False
    replica_urls: _URLList = Field(default=(), repr=False)
    replica_read_your_writes: float = Field(default=2.0, ge=0)
    replica_max_lag: float = Field(default=5.0, gt=0)
    replica_check_interval: float = Field(default=1.0, gt=0)
    # SQLite
    sqlite_busy_timeout: float = Field(default=5.0, ge=0)
    sqlite_create: bool = True
    sqlite_cache_size_mb: int = Field(default=64, ge=0)
    # retries
    retry_attempts: int = Field(default=3, ge=1)
    retry_initial_delay: float = Field(default=0.05, ge=0)
    retry_max_delay: float = Field(default=2.0, ge=0)
    retry_jitter: float = Field(default=0.1, ge=0)
    resolve_lost_commits: _Bool = True
    # observability
    slow_query_ms: float = Field(default=500.0, ge=0)
    log_queries: _Bool = False
    # cache
    redis_url: str | None = Field(default=None, repr=False)
    cache_ttl: float = Field(default=300.0, ge=0)
    cache_max_size: int = Field(default=10_000, ge=0)
    cache_prefix: str = Field(default="botdb:", min_length=1)
    cache_via_database: _Bool = True
    cache_poll_interval: float = Field(default=0.1, gt=0)
    migrations_path: str | None = None
    # recorder
    recorder_batch_size: int = Field(default=1000, ge=1)
    recorder_flush_interval: float = Field(default=1.0, gt=0)
    recorder_max_buffer: int = Field(default=100_000, ge=2)
    recorder_when_full: Literal["spill", "wait"] = "spill"
    recorder_spool_path: Path | None = None
    recorder_platform: Literal["discord", "telegram"] = "discord"
    cursor_secret: str | None = Field(default=None, repr=False)
    # scheduler
    scheduler_lease: float = Field(default=60.0, gt=0)
    scheduler_poll_interval: float = Field(default=1.0, gt=0)
    scheduler_batch: int = Field(default=100, ge=1)
    scheduler_concurrency: int = Field(default=10, ge=1)
    scheduler_retry_delay: float = Field(default=5.0, ge=0)
    scheduler_retry_max_delay: float = Field(default=3600.0, ge=0)

    _url: DatabaseURL = PrivateAttr()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keywords first, then botdb's own environment source; no implicit ``.env`` file."""
        given = set(getattr(init_settings, "init_kwargs", {}))
        return init_settings, _EnvironmentSource(settings_cls, given)

    if not TYPE_CHECKING:  # mypy keeps the typed keyword signature the pydantic plugin makes

        def __init__(self, *args: Any, **values: Any) -> None:
            if args or any(name.startswith("_") for name in values):
                raise TypeError(
                    "Settings takes field keyword arguments only; "
                    "use Settings.from_env(env_file=...) to read a .env file"
                )
            super().__init__(**values)

    @model_validator(mode="wrap")
    @classmethod
    def _translate_errors(cls, data: Any, handler: ModelWrapValidatorHandler[Settings]) -> Settings:
        try:
            return handler(data)
        except ValidationError as exc:
            details = "; ".join(_describe(error, data) for error in exc.errors())
            raise ConfigurationError(f"invalid botdb settings: {details}") from exc

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.pool_max_size < self.pool_min_size:
            raise ConfigurationError(
                f"pool_max_size={self.pool_max_size} is below pool_min_size={self.pool_min_size}"
            )
        if self.retry_max_delay < self.retry_initial_delay:
            raise ConfigurationError(
                f"retry_max_delay={self.retry_max_delay} is below "
                f"retry_initial_delay={self.retry_initial_delay}"
            )
        if self.recorder_max_buffer <= self.recorder_batch_size:
            raise ConfigurationError(
                f"recorder_max_buffer={self.recorder_max_buffer} must be larger than "
                f"recorder_batch_size={self.recorder_batch_size}"
            )
        if self.redis_url is not None and not self.redis_url.startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise ConfigurationError(
                f"redis_url {mask_text(self.redis_url)!r} must start with redis://, rediss:// "
                "or unix://"
            )
        self._url = DatabaseURL.parse(self.database_url)
        url_mode = self._url.query.get("sslmode")
        if url_mode is not None and url_mode not in get_args(SSLMode):
            raise ConfigurationError(
                f"sslmode={url_mode!r} in the database URL is not one of {get_args(SSLMode)}"
            )
        if self.replica_urls:
            if self._url.backend != "postgresql":
                raise ConfigurationError(
                    "replica_urls needs a PostgreSQL primary: SQLite has no read replicas"
                )
            for replica in self.replica_urls:
                try:
                    parsed = DatabaseURL.parse(replica)
                except ConfigurationError as exc:
                    raise ConfigurationError(f"replica_urls: {exc.message}") from exc
                if parsed.backend != "postgresql":
                    raise ConfigurationError(
                        f"replica_urls: {parsed.masked()!r} is not a PostgreSQL URL"
                    )
        return self

    @classmethod
    def from_env(
        cls,
        url: str | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        env_file: str | os.PathLike[str] | None = None,
        **overrides: Any,
    ) -> Settings:
        """Build settings from the environment, following the precedence table.

        Args:
            url: the database URL; beats every environment variable.
            environ: variables to read instead of ``os.environ`` (tests pass a dict).
            env_file: a ``.env`` file whose variables rank below the real environment.
            **overrides: any field; each beats the environment for that field.

        Raises:
            ConfigurationError: an invalid value, a missing ``env_file``, or ``url`` and
                ``database_url`` both given and different.
        """
        env = dict(os.environ if environ is None else environ)
        if env_file is not None:
            if not Path(env_file).is_file():
                raise ConfigurationError(f"env file {os.fspath(env_file)!r} does not exist")
            from dotenv import dotenv_values

            loaded = {k: v for k, v in dotenv_values(env_file).items() if v is not None}
            env = loaded | env
        if url is not None:
            if overrides.get("database_url", url) != url:
                raise ConfigurationError("give the database URL once: url= or database_url=")
            overrides["database_url"] = url
        token = _ENVIRON.set(env)
        try:
            return cls(**overrides)
        finally:
            _ENVIRON.reset(token)

    @property
    def url(self) -> DatabaseURL:
        """The parsed database URL (parsed once, at construction)."""
        return self._url

    @property
    def backend(self) -> BackendName:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._url.backend

    def migration_locations(self) -> list[Path]:
        """The directories of ``migrations_path`` (split like ``PATH``), empty when unset."""
        if not self.migrations_path:
            return []
        return [Path(part) for part in self.migrations_path.split(os.pathsep) if part]

    def ssl_context(self) -> ssl.SSLContext | str | bool | None:
        """What to pass as asyncpg's ``ssl=`` argument (``None`` on SQLite).

        Mode: ``ssl_mode`` if given (keyword or ``BOTDB_SSL_MODE``), else the URL's ``sslmode``.
        ``disable`` -> ``False``; ``allow``/``prefer`` -> that string; ``require`` -> a context
        that does not verify (with a CA file it verifies the chain, as libpq does);
        ``verify-ca`` -> verifies against ``ssl_ca_file``, the URL's ``sslrootcert`` or the
        system store; ``verify-full`` also checks the host name.

        Raises:
            ConfigurationError: the CA file is missing or is not a valid certificate file.
        """
        if self.backend == "sqlite":
            return None
        explicit = "ssl_mode" in self.model_fields_set
        mode = self.ssl_mode if explicit else self._url.query.get("sslmode", self.ssl_mode)
        if mode == "disable":
            return False
        if mode in ("allow", "prefer"):
            return mode
        root = self._url.query.get("sslrootcert")
        ca_file = self.ssl_ca_file or (Path(root) if root else None)
        if mode == "require" and ca_file is None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        if ca_file is not None and not ca_file.is_file():
            raise ConfigurationError(f"SSL CA file {str(ca_file)!r} does not exist")
        try:
            context = ssl.create_default_context(cafile=None if ca_file is None else str(ca_file))
        except (ssl.SSLError, OSError) as exc:
            raise ConfigurationError(f"cannot load SSL CA file {str(ca_file)!r}") from exc
        context.check_hostname = mode == "verify-full"
        return context

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        yield "database_url", self._url.masked()
        yield from super().__repr_args__()
        if self.redis_url is not None:
            yield "redis_url", mask_text(self.redis_url)
