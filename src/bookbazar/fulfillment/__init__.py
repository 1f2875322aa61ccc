"""Fulfilment: PAID -> FULFILLING -> SHIPPED (carrier, tracking number) -> DELIVERED."""
