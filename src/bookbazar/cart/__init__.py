"""The cart: Redis hash per user changed by Lua, written behind to PostgreSQL."""
