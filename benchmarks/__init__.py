"""Book Bazar load benchmarks: `make bench` / `python -m benchmarks --help`.

Scenarios (each bounded in requests and time, loopback only): `cart`, `orders`,
`hot-book`, `e2e`, `sockets`. Every order scenario is followed by the oversell/undersell
check against PostgreSQL and Redis. Results go to the terminal and to
`benchmarks/results/<timestamp>.json`.
"""
