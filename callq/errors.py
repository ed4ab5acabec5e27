"""One exception root. What may be retried is split from what may not."""

from __future__ import annotations


class CallqError(Exception):
    """Base of every error this project raises on purpose."""


class LedgerError(CallqError):
    """The ledger refused an operation or holds an unexpected record."""


class UnknownCall(LedgerError):
    """No call record exists for this request id."""


class Unreplicated(LedgerError):
    """The master took the writes, but fewer Redis replicas than ``REDIS_WAIT_REPLICAS``
    acknowledged them in time: a failover now could lose them. Safe to do again."""


class LimiterUnavailable(CallqError):
    """The limiter could not be reached. It fails closed: no request may go out."""


class Stopping(CallqError):
    """The worker is shutting down: a call still waiting for a permit is given back."""


class InvalidRow(CallqError):
    """A campaign row was refused. ``field`` names the column at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class ExotelReplyError(CallqError):
    """Exotel's reply could not be understood."""
