"""How much load each scenario applies: the default run and the --quick one."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Profile:
    name: str
    users: int
    # healthz: GET /healthz closed loop at c=50, the run's CPU and rate calibration
    healthz_seconds: float
    # idle: nothing to do, API and worker CPU sampled
    idle_seconds: float
    # catalog: GET /api/v1/books?pageSize=20 (pages, searches) closed loop at c=50
    catalog_seconds: float
    # cart: POST /cart/add, closed loop per concurrency level
    cart_levels: tuple[int, ...]
    cart_requests: int
    cart_seconds: float
    # orders: POST /orders from a prepared one-line cart, distinct books
    order_levels: tuple[int, ...]
    order_requests: int
    order_seconds: float
    order_books: int
    # hot-book: `hot_buyers` buyers race for `hot_stock` units of a new title, per level
    hot_buyers: int
    hot_stock: int
    hot_levels: tuple[int, ...]
    # e2e: order -> payments/init -> sandbox pay -> PAID, open loop at each target rate in
    # turn (`e2e_seconds` each, `e2e_hold_seconds` at `e2e_hold_rate`), stopping at the
    # first rate whose order -> order.paid p99 is over 1 s or that backs up
    e2e_rates: tuple[float, ...]
    e2e_seconds: float
    e2e_paid_timeout: float
    e2e_hold_rate: float
    e2e_hold_seconds: float
    # sockets: idle Socket.IO connections held against the API process
    sockets: int
    sockets_hold: float
    sockets_connect_concurrency: int


FULL = Profile(
    name="full",
    users=300,
    healthz_seconds=8.0,
    idle_seconds=10.0,
    catalog_seconds=10.0,
    cart_levels=(1, 20, 50, 100),
    cart_requests=20_000,
    cart_seconds=12.0,
    order_levels=(1, 20, 50, 100),
    order_requests=4_000,
    order_seconds=12.0,
    order_books=200,
    hot_buyers=300,
    hot_stock=100,
    hot_levels=(50, 200),
    e2e_rates=(10.0, 25.0, 50.0, 75.0, 100.0),
    e2e_seconds=20.0,
    e2e_paid_timeout=20.0,
    e2e_hold_rate=50.0,
    e2e_hold_seconds=60.0,
    sockets=1_000,
    sockets_hold=5.0,
    sockets_connect_concurrency=50,
)

QUICK = Profile(
    name="quick",
    users=60,
    healthz_seconds=3.0,
    idle_seconds=4.0,
    catalog_seconds=3.0,
    cart_levels=(1, 50),
    cart_requests=1_500,
    cart_seconds=3.0,
    order_levels=(1, 50),
    order_requests=300,
    order_seconds=3.0,
    order_books=60,
    hot_buyers=60,
    hot_stock=20,
    hot_levels=(50,),
    e2e_rates=(10.0, 25.0),
    e2e_seconds=4.0,
    e2e_paid_timeout=15.0,
    e2e_hold_rate=50.0,
    e2e_hold_seconds=4.0,
    sockets=100,
    sockets_hold=2.0,
    sockets_connect_concurrency=20,
)
