"""Stock: available-units counters and fenced holds in Redis (Lua, atomic), reconciled
with PostgreSQL on demand and audited on a schedule. Key layout: see `keys`."""
