"""Book Bazar load benchmarks: `make bench` / `python -m benchmarks --help`.

Scenarios (each bounded in requests and time, loopback only): `healthz` (the calibration),
`idle`, `catalog`, `cart`, `orders`, `hot-book`, `e2e`, `sockets`. Each step reports API
and worker CPU ms per operation, the worker's counted until it has drained. Every order
scenario is followed by the oversell/undersell check against PostgreSQL and Redis and the
service's stock audit. Results go to the terminal (with a summary table against the
issue's targets) and to `benchmarks/results/<timestamp>.json`; `--profile` adds py-spy
flame graphs.
"""
