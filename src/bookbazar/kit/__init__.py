"""Small shared helpers: responses, pagination, money, ids, time."""
