"""Books: search, details, admin create and restock, demo catalog."""
