"""Lua scripts, loaded with importlib.resources and registered once (EVALSHA)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
from importlib.resources import files
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError


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

    async def run_with(
        self,
        name: str,
        keys: Sequence[str],
        args: Sequence[Any],
        also: Callable[[Pipeline], object],
    ) -> list[Any]:
        """Run a script and the commands `also` queues, in one round trip (a pipeline,
        not a transaction: the other commands must be safe to run whatever the script
        did). Returns every reply, the script's first."""
        script = self[name]

        def fill(pipe: Pipeline) -> None:
            _evalsha(pipe, script, keys, args)
            also(pipe)

        return await self._pipelined(script, fill)

    async def run_many(
        self, name: str, calls: Sequence[tuple[Sequence[str], Sequence[Any]]]
    ) -> list[Any]:
        """Run one script several times (keys and args per call) in one round trip."""
        script = self[name]

        def fill(pipe: Pipeline) -> None:
            for keys, args in calls:
                _evalsha(pipe, script, keys, args)

        return await self._pipelined(script, fill)

    async def _pipelined(self, script: AsyncScript, fill: Callable[[Pipeline], None]) -> list[Any]:
        for attempt in range(2):
            async with self._redis.pipeline(transaction=False) as pipe:
                fill(pipe)
                try:
                    return list(await pipe.execute())
                except NoScriptError:
                    if attempt:
                        raise
                    # The server restarted and forgot it: load it once, run it all again.
                    await self._redis.script_load(script.script)
        raise AssertionError("unreachable")  # pragma: no cover


def _evalsha(pipe: Pipeline, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]) -> None:
    # As a plain command: a cluster pipeline refuses evalsha() (it routes this one by its
    # keys' slot).
    pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
