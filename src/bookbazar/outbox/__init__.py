"""Transactional outbox: events written with the state change, relayed by the worker."""
