"""Lua scripts, loaded with importlib.resources and registered once (EVALSHA)."""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript


@cache
def source(name: str) -> str:
    return (files(__package__) / f"{name}.lua").read_text(encoding="utf-8")


class Scripts:
    """Every script, bound to one client. redis-py's Script runs EVALSHA and falls back
    to loading the script when the server does not know it (after a restart)."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._cache: dict[str, AsyncScript] = {}

    def __getitem__(self, name: str) -> AsyncScript:
        script = self._cache.get(name)
        if script is None:
            script = self._redis.register_script(source(name))
            self._cache[name] = script
        return script

    async def run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        return await self[name](keys=keys, args=args)
