"""All SQLAlchemy models, in one place for Alembic."""

from bookbazar.models.base import Base
from bookbazar.models.catalog import Book, CatalogVersion
from bookbazar.models.commerce import (
    Cart,
    CartItem,
    IdempotencyRecord,
    Order,
    OrderItem,
    OrderStatus,
    Shipment,
)
from bookbazar.models.events import Notification, OutboxEvent
from bookbazar.models.payments import Payment, ProcessedWebhookEvent
from bookbazar.models.stock import Restock, StockAudit
from bookbazar.models.users import Role, User

__all__ = [
    "Base",
    "Book",
    "Cart",
    "CartItem",
    "CatalogVersion",
    "IdempotencyRecord",
    "Notification",
    "Order",
    "OrderItem",
    "OrderStatus",
    "OutboxEvent",
    "Payment",
    "ProcessedWebhookEvent",
    "Restock",
    "Role",
    "Shipment",
    "StockAudit",
    "User",
]
