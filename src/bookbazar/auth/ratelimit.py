"""Failed-login limiter in Redis: per account and per client address, fixed window."""

from __future__ import annotations

from redis.asyncio import Redis

from bookbazar.errors import TooManyRequests


class LoginLimiter:
    def __init__(self, redis: Redis, *, max_failures: int, window_seconds: int) -> None:
        self.redis = redis
        self.max_failures = max_failures
        self.window = window_seconds

    @staticmethod
    def _keys(email: str, client_ip: str) -> list[str]:
        return [f"bb:loginfail:acct:{email}", f"bb:loginfail:ip:{client_ip}"]

    async def check(self, email: str, client_ip: str) -> None:
        """Raise 429 with Retry-After if either counter is at its limit."""
        keys = self._keys(email, client_ip)
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.get(key)
                pipe.ttl(key)
            values = await pipe.execute()
        # The per-address limit is wider so one shared NAT does not lock out everyone.
        limits = [self.max_failures, self.max_failures * 4]
        for i, limit in enumerate(limits):
            count, ttl = values[2 * i], values[2 * i + 1]
            if count is not None and int(count) >= limit:
                raise TooManyRequests(
                    "Too many failed sign-in attempts, try again later",
                    retry_after=ttl if ttl and ttl > 0 else self.window,
                )

    async def record_failure(self, email: str, client_ip: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            for key in self._keys(email, client_ip):
                pipe.incr(key)
                pipe.expire(key, self.window, nx=True)
            await pipe.execute()

    async def reset_account(self, email: str) -> None:
        await self.redis.delete(self._keys(email, "")[0])
