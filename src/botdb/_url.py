"""The parsed database URL behind :mod:`botdb.config` (private; import it from there).

:class:`DatabaseURL` parses ``sqlite://`` and ``postgresql://`` URLs, renders them for
SQLAlchemy and asyncpg, and never shows the password: ``str``, ``repr`` and
:meth:`DatabaseURL.masked` replace it with ``***``.

Example:
    >>> DatabaseURL.parse("postgres://bot:s3cr%40t@db:5432/bot").masked()
    'postgresql://bot:***@db:5432/bot'
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Literal
from urllib.parse import parse_qsl, quote, unquote, urlencode

from botdb.errors import ConfigurationError

__all__ = ["BackendName", "DatabaseURL", "mask_text", "parse_port"]

BackendName = Literal["sqlite", "postgresql"]

_SQLITE_SCHEMES = frozenset({"sqlite", "sqlite+aiosqlite"})
_PG_SCHEMES = frozenset({"postgresql", "postgres", "postgresql+asyncpg"})
_SECRET_QUERY_KEYS = frozenset({"password", "sslpassword"})
# Query keys that SQLAlchemy's asyncpg dialect can pass on to ``asyncpg.connect`` as keywords.
_SQLALCHEMY_KEYS = frozenset(
    {"host", "port", "passfile", "target_session_attrs", "krbsrvname", "gsslib"}
    | {"prepared_statement_cache_size"}
)
# libpq client options asyncpg does not know (it would send them to the server as settings).
_LIBPQ_ONLY_KEYS = frozenset(
    {"connect_timeout", "keepalives", "keepalives_idle", "keepalives_interval", "requiressl"}
    | {"keepalives_count", "tcp_user_timeout", "channel_binding", "gssencmode"}
)


def mask_text(text: str) -> str:
    """Mask the password in a URL-like string that may not even parse."""
    scheme, sep, rest = text.partition("://")
    if sep and (at := rest.rfind("@")) >= 0 and ":" in rest[:at]:
        text = f"{scheme}://{rest[:at].split(':', 1)[0]}:***@{rest[at + 1 :]}"
    elif sep and "@" not in rest:
        # "user:password/db" (the host forgotten): the password sits where the port goes.
        netloc, slash, after = rest.partition("/")
        host, colon, port = netloc.rpartition(":")
        if colon and port and not port.isdigit() and not host.endswith("]"):
            text = f"{scheme}://{host}:***{slash}{after}"
    return re.sub(r"([?&](?:ssl)?password=)[^&#]*", r"\1***", text)


def parse_port(text: str, where: str) -> int:
    """The port number in ``text``; ``where`` names its source in the error message.

    A port that is not a number is not shown: in ``postgresql://bot:secret/db`` (the host
    forgotten) the password is what sits where the port goes.
    """
    if not text.isdigit():
        raise ConfigurationError(
            f"invalid port in {where}: it is not a number (not shown: it may be a password "
            "when the host is missing; write user:password@host:port/database)"
        )
    if not 0 < int(text) < 65536:
        raise ConfigurationError(f"invalid port {text} in {where}: use a number from 1 to 65535")
    return int(text)


@dataclass(frozen=True, slots=True, repr=False)
class DatabaseURL:
    """A parsed database URL. ``str()`` and ``repr()`` show it with the password masked.

    Attributes:
        backend: ``"sqlite"`` or ``"postgresql"``.
        path: SQLite file path; ``""`` or ``":memory:"`` for an in-memory database.
        host: PostgreSQL host name, or a unix-socket directory (starting with ``/``); ``""``
            lets the driver choose.
        port: PostgreSQL port, ``None`` for the default.
        user: user name (decoded).
        password: password (decoded). Never printed.
        database: PostgreSQL database name (decoded).
        query: the remaining query parameters, e.g. ``{"sslmode": "require"}``.
    """

    backend: BackendName
    path: str = ""
    host: str = ""
    port: int | None = None
    user: str = ""
    password: str = ""
    database: str = ""
    query: dict[str, str] = field(default_factory=dict, hash=False)

    @classmethod
    def parse(cls, url: str) -> DatabaseURL:
        """Parse a ``sqlite://`` or ``postgresql://`` URL.

        Raises:
            ConfigurationError: empty or malformed URL, unknown scheme or driver, bad port,
                missing PostgreSQL database name.
        """
        url = url.strip()
        if not url:
            raise ConfigurationError("the database URL is empty")
        shown = mask_text(url)
        scheme, sep, rest = url.partition("://")
        scheme = scheme.lower()
        if not sep:
            raise ConfigurationError(f"malformed database URL {shown!r}: expected scheme://…")
        rest, _, query_text = rest.partition("?")
        query = dict(parse_qsl(query_text, keep_blank_values=True))
        if scheme in _SQLITE_SCHEMES:
            if rest and not rest.startswith("/"):
                raise ConfigurationError(
                    f"malformed SQLite URL {shown!r}: use sqlite:///relative.db, "
                    "sqlite:////absolute/path.db or sqlite:///:memory:"
                )
            return cls(backend="sqlite", path=rest[1:], query=query)
        if scheme.startswith(("postgresql+", "postgres+")) and scheme not in _PG_SCHEMES:
            raise ConfigurationError(
                f"unsupported PostgreSQL driver {scheme!r}: botdb connects through asyncpg; "
                "use postgresql:// or postgresql+asyncpg://"
            )
        if scheme not in _PG_SCHEMES:
            raise ConfigurationError(
                f"unsupported database URL scheme {scheme!r} in {shown!r}: "
                "use sqlite:///path.db or postgresql://user:password@host:port/database"
            )
        netloc, _, path = rest.partition("/")
        if "@" in path and "@" not in netloc:
            raise ConfigurationError(
                f"malformed database URL {shown!r}: percent-encode / ? # @ : in the user name "
                "or password (for example @ as %40)"
            )
        userinfo, _, hostport = netloc.rpartition("@")
        user, _, password = userinfo.partition(":")
        host, port_text = hostport, ""
        if hostport.startswith("["):
            host, _, after = hostport[1:].partition("]")
            port_text = after.removeprefix(":")
        elif ":" in hostport:
            host, _, port_text = hostport.rpartition(":")
        if "," in host:
            raise ConfigurationError(f"multiple hosts are not supported: {shown!r}")
        parts = {"host": host, "port": port_text, "user": user, "password": password}
        parts = {key: unquote(value) for key, value in parts.items()} | {"database": unquote(path)}
        for key in ("host", "port", "user", "password", "dbname", "database"):
            name = "database" if key == "dbname" else key
            if key in query:
                if parts[name]:
                    raise ConfigurationError(f"{shown!r} gives the {name} twice")
                parts[name] = query.pop(key)
        if not parts["database"] or "/" in parts["database"]:
            raise ConfigurationError(
                f"missing or malformed database name in {shown!r}: end the URL with "
                "/<database>, e.g. postgresql://user@localhost:5432/mybot"
            )
        port = parse_port(parts["port"], repr(shown)) if parts["port"] else None
        user, password, database = parts["user"], parts["password"], parts["database"]
        return cls("postgresql", "", parts["host"], port, user, password, database, query)

    @property
    def is_memory(self) -> bool:
        """True for an in-memory SQLite database."""
        return self.backend == "sqlite" and self.path in ("", ":memory:")

    def _render(self, scheme: str, password: str | None, keep: frozenset[str] | None) -> str:
        query = {k: v for k, v in self.query.items() if keep is None or k in keep}
        if self.backend == "sqlite":
            text = f"{scheme}:///{':memory:' if self.is_memory else self.path}"
        else:
            netloc = ""
            if self.user or password:
                netloc = quote(self.user, safe="") + (f":{password}" if password else "") + "@"
            if self.host.startswith("/"):
                query = (
                    {"host": self.host} | ({"port": str(self.port)} if self.port else {}) | query
                )
            else:
                netloc += f"[{self.host}]" if ":" in self.host else self.host
                netloc += f":{self.port}" if self.port else ""
            text = f"{scheme}://{netloc}/{quote(self.database, safe='')}"
        return text + (f"?{urlencode(query, safe='/:*', quote_via=quote)}" if query else "")

    def sqlalchemy_url(self) -> str:
        """URL for SQLAlchemy's async engine: ``sqlite+aiosqlite`` or ``postgresql+asyncpg``.

        Query parameters that ``asyncpg.connect`` does not take as keywords (``sslmode``,
        ``sslrootcert``, ``application_name``…) are left out: pass SSL with
        :meth:`botdb.config.Settings.ssl_context`.
        """
        if self.backend == "sqlite":
            return self._render("sqlite+aiosqlite", None, None)
        password = quote(self.password, safe="") if self.password else None
        return self._render("postgresql+asyncpg", password, _SQLALCHEMY_KEYS)

    def asyncpg_dsn(self) -> str:
        """Plain ``postgresql://`` DSN for ``asyncpg.connect`` / ``create_pool``.

        Raises:
            ConfigurationError: the URL is a SQLite one.
        """
        if self.backend != "postgresql":
            raise ConfigurationError(f"{self.masked()} is not a PostgreSQL URL")
        keep = frozenset(self.query) - _LIBPQ_ONLY_KEYS
        password = quote(self.password, safe="") if self.password else None
        return self._render("postgresql", password, keep)

    def masked(self) -> str:
        """The URL with the password (and secret query values) replaced by ``***``."""
        scheme = "sqlite" if self.backend == "sqlite" else "postgresql"
        masked = {k: ("***" if k in _SECRET_QUERY_KEYS else v) for k, v in self.query.items()}
        copy = replace(self, password="", query=masked)
        return copy._render(scheme, "***" if self.password else None, None)

    def __str__(self) -> str:
        return self.masked()

    def __repr__(self) -> str:
        return f"DatabaseURL({self.masked()!r})"
