"""Stock: available-units counters and per-order reservations in Redis (Lua, atomic).

Key layout (one hash tag, so every script's keys live in one Redis Cluster slot):
    bb:{stock}:avail:<bookId>   units available = on hand - units held
    bb:{stock}:resv:<orderId>   hash bookId -> units held by that order
    bb:{stock}:resv-index       zset orderId -> reserved-at (ms)
    bb:{stock}:done:<orderId>   'released' | 'converted' once a reservation ended
"""
