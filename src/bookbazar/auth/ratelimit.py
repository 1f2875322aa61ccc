"""Failed-login limiter in Redis: per account and per client address, fixed window.

Each sign-in attempt takes a slot *before* the password is checked, in one MULTI with the
window's expiry, so concurrent guesses cannot all slip under the limit between a check and
a record. A successful sign-in gives its slot back (and clears the account's count), so
successful logins never add up to a lock-out; a refused attempt checked no password and
gives its slot back too. Works on Redis 6.2 (no `EXPIRE … NX`).
"""

from __future__ import annotations

from redis.asyncio import Redis

from bookbazar.errors import TooManyRequests

# One hash tag: the transaction touches an account key and an address key, which must
# live in the same slot on Redis Cluster.
_PREFIX = "bb:{login}:"
# The per-address limit is wider so one shared NAT does not lock out everyone behind it.
ADDRESS_FACTOR = 4


class LoginLimiter:
    def __init__(self, redis: Redis, *, max_failures: int, window_seconds: int) -> None:
        self.redis = redis
        self.max_failures = max_failures
        self.max_per_address = max_failures * ADDRESS_FACTOR
        self.window = window_seconds

    @staticmethod
    def account_key(email: str) -> str:
        return f"{_PREFIX}acct:{email}"

    @staticmethod
    def address_key(client_ip: str) -> str:
        return f"{_PREFIX}ip:{client_ip}"

    async def acquire(self, email: str, client_ip: str) -> None:
        """Count this attempt against both limits.

        Raises TooManyRequests (with Retry-After = seconds until the window ends) when the
        account or the address has used up its attempts; nothing is counted then."""
        acct, addr = self.account_key(email), self.address_key(client_ip)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(acct, 0, ex=self.window, nx=True)
            pipe.set(addr, 0, ex=self.window, nx=True)
            pipe.incr(acct)
            pipe.incr(addr)
            pipe.ttl(acct)
            pipe.ttl(addr)
            _, _, n_acct, n_addr, ttl_acct, ttl_addr = await pipe.execute()
        waits = [
            ttl if ttl > 0 else self.window
            for count, limit, ttl in (
                (n_acct, self.max_failures, ttl_acct),
                (n_addr, self.max_per_address, ttl_addr),
            )
            if int(count) > limit
        ]
        if waits:
            await self._give_back(acct, addr)
            raise TooManyRequests(
                "Too many failed sign-in attempts, try again later", retry_after=max(waits)
            )

    async def succeeded(self, email: str, client_ip: str) -> None:
        """The attempt was right: clear the account's failures, return the address slot."""
        await self.redis.delete(self.account_key(email))
        await self._give_back(self.address_key(client_ip))

    async def _give_back(self, *keys: str) -> None:
        for key in keys:
            # A key that expired meanwhile comes back from DECR as -1 without a TTL:
            # delete it rather than leave a counter that never expires.
            if int(await self.redis.decr(key)) <= 0:
                await self.redis.delete(key)
