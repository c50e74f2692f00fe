"""botdb.services.guild_config: typed settings with defaults, validation, the prefix resolver.

Every test runs on SQLite and on the real PostgreSQL server.
"""

from __future__ import annotations

import types
from typing import Any

import pytest

import botdb
from botdb import errors
from botdb.services import GuildConfigService, GuildSettings
from tests.helpers import statements

#: Also runs through pgbouncer in transaction mode with BOTDB_TEST_PGBOUNCER_ALL=1 (conftest).
PGBOUNCER_CONTRACT = "extended"

GUILD = 1_150_000_000_000_000_001


async def stored(db: botdb.Database) -> list[Any]:
    return [tuple(r) for r in await db.fetch("SELECT guild_id, prefix FROM guild_configs")]


async def test_a_guild_without_a_row_gets_the_defaults(db: botdb.Database) -> None:
    settings = await GuildConfigService(db).get(GUILD)
    assert isinstance(settings, GuildSettings)
    assert (settings.prefix, settings.locale, settings.timezone) == ("!", "en", "UTC")
    assert settings.log_channel_id is None
    assert dict(settings.settings) == {}
    custom = await GuildConfigService(db, prefix="$", locale="ja").get(GUILD)
    assert (custom.prefix, custom.locale) == ("$", "ja")
    assert await stored(db) == []  # reading creates nothing


async def test_set_stores_only_the_given_fields_and_none_restores_the_default(
    db: botdb.Database,
) -> None:
    config = GuildConfigService(db)
    after = await config.set(GUILD, prefix="?", mod_log_channel_id=42, settings={"xp": True})
    assert (after.prefix, after.mod_log_channel_id, after.settings["xp"]) == ("?", 42, True)
    again = await config.set(GUILD, locale="pt-BR")
    assert (again.prefix, again.locale, again.mod_log_channel_id) == ("?", "pt-BR", 42)
    assert (await config.get(GUILD)).locale == "pt-BR"
    reset = await config.update(GUILD, prefix=None)
    assert reset.prefix == "!"
    assert await stored(db) == [(GUILD, None)]
    assert (await config.reset(GUILD)).locale == "en"
    assert (await config.get(GUILD)).mod_log_channel_id is None
    assert await stored(db) == []


async def test_get_is_served_from_the_cache_after_the_first_load(db: botdb.Database) -> None:
    config = GuildConfigService(db)
    await config.set(GUILD, prefix="?")
    first = await config.get(GUILD)
    with statements(db) as sent:
        hits = [await config.get(GUILD) for _ in range(100)]
    assert sent == []
    assert all(h is first for h in hits)
    await config.set(GUILD, prefix="%")  # invalidated after the commit
    assert (await config.get(GUILD)).prefix == "%"


async def test_settings_are_immutable(db: botdb.Database) -> None:
    settings = await GuildConfigService(db).set(GUILD, settings={"a": 1})
    with pytest.raises(TypeError):
        settings.settings["a"] = 2  # type: ignore[index]
    with pytest.raises(AttributeError):
        settings.prefix = "x"  # type: ignore[misc]


async def test_telegram_chat_ids_are_negative_and_accepted(db: botdb.Database) -> None:
    config = GuildConfigService(db)
    assert (await config.set(-1001234567890, locale="ru")).locale == "ru"
    platform = await db.fetchval("SELECT platform FROM guilds WHERE id = $1", -1001234567890)
    assert platform == "telegram"


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"prefix": "x" * 33}, errors.DataError),  # too long for the column
        ({"prefix": ""}, errors.DataError),
        ({"prefix": " !"}, errors.DataError),
        ({"prefix": 5}, errors.ArgumentError),  # wrong type
        ({"colour": "red"}, errors.ArgumentError),  # unknown field
        ({}, errors.ArgumentError),
        ({"timezone": "Mars/Olympus_Mons"}, errors.DataError),
        ({"locale": "english please"}, errors.DataError),
        ({"log_channel_id": "123"}, errors.ArgumentError),
        ({"log_channel_id": 0}, errors.DataError),
        ({"settings": [1, 2]}, errors.ArgumentError),
        ({"settings": {"when": object()}}, errors.DataError),
        ({"settings": {1: "int keys"}}, errors.DataError),
        ({"prefix": "?", "mute_role_id": 1.5}, errors.ArgumentError),  # one bad field: no write
    ],
)
async def test_bad_input_raises_a_typed_error_and_stores_nothing(
    db: botdb.Database, fields: dict[str, Any], error: type[Exception]
) -> None:
    config = GuildConfigService(db)
    await config.set(GUILD, prefix="keep")
    with pytest.raises(error):
        await config.set(GUILD, **fields)
    assert await stored(db) == [(GUILD, "keep")]
    assert (await config.get(GUILD)).prefix == "keep"


async def test_bad_guild_id_and_bad_defaults_are_rejected(db: botdb.Database) -> None:
    config = GuildConfigService(db)
    with pytest.raises(errors.ArgumentError):
        await config.get("123")  # type: ignore[arg-type]
    with pytest.raises(errors.DataError):
        await config.set(0, prefix="?")
    with pytest.raises(errors.ConfigurationError):
        GuildConfigService(db, prefix="")
    with pytest.raises(errors.ConfigurationError):
        GuildConfigService(db, timezone="Nowhere/Land")
    assert await stored(db) == []


async def test_prefix_resolver_serves_guilds_dms_and_mentions(db: botdb.Database) -> None:
    config = GuildConfigService(db)
    await config.set(GUILD, prefix="?")
    bot = types.SimpleNamespace(user=types.SimpleNamespace(id=99))
    in_guild = types.SimpleNamespace(guild=types.SimpleNamespace(id=GUILD))
    unset_guild = types.SimpleNamespace(guild=types.SimpleNamespace(id=GUILD + 1))
    in_dm = types.SimpleNamespace(guild=None)
    resolve = config.prefix_resolver()
    assert await resolve(bot, in_guild) == ["?"]
    assert await resolve(bot, in_dm) == ["!"]
    custom = config.prefix_resolver(default=">>")
    assert await custom(bot, unset_guild) == [">>"]
    assert await custom(bot, in_dm) == [">>"]
    with_mention = config.prefix_resolver(mention=True)
    assert await with_mention(bot, in_guild) == ["<@99> ", "<@!99> ", "?"]
    with pytest.raises(errors.ConfigurationError):
        config.prefix_resolver(default="")
