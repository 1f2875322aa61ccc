"""Operator views: orders by status, stock per book, the dead-letter queue."""
