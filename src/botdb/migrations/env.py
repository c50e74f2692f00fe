"""Alembic's environment script for botdb's packaged migrations (see ``_env.py``)."""

from __future__ import annotations

from typing import cast

from alembic import context
from alembic.runtime.environment import EnvironmentContext

from botdb.migrations._env import run_env

run_env(cast(EnvironmentContext, context))
