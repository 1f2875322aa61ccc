"""Orders: idempotent placement, reservation expiry, cancellation, history."""
