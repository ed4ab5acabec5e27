"""Bulk enqueue: validated rows -> ledger records and their task messages, in batches.

Each call's record and its ``place_call`` message are written by one script, atomically, and
a batch of them goes in one pipelined round trip: a record never exists without its task,
and a worker never sees a task without its record. Enqueueing the same rows twice adds no
call: the record exists, and only calls still ``queued`` get their task pushed again
(harmless: the claim is atomic, so a second copy does nothing). That makes a re-run the
recovery after anything went wrong mid-file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from celery import Celery

from callq.keys import CAMPAIGN_RE, Keys
from callq.ledger import Ledger
from callq.redis_conn import make_redis
from config import Settings
from producer.messages import TaskMessages
from producer.rows import CallRequest, FileIssue, RowError, read_rows, request_id
from worker.app import make_app

Progress = Callable[[int], None]


@dataclass
class EnqueueResult:
    campaign: str
    accepted: int = 0  # new calls written and published
    existing: int = 0  # already in the ledger (nothing added)
    republished: int = 0  # of those, still queued: task published again
    duplicates: list[RowError] = field(default_factory=list)  # same call twice in this input
    rejected: list[RowError] = field(default_factory=list)
    issues: list[FileIssue] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign,
            "accepted": self.accepted,
            "existing": self.existing,
            "republished": self.republished,
            "duplicates": len(self.duplicates),
            "rejected": len(self.rejected),
            "errors": [str(e) for e in self.rejected],
            "duplicate_rows": [str(e) for e in self.duplicates],
            "issues": [i.message for i in self.issues],
        }


def check_campaign(campaign: str) -> str:
    if not CAMPAIGN_RE.fullmatch(campaign):
        raise ValueError(
            f"campaign id {campaign!r}: use 1-64 letters, digits, '_', '.' or '-' "
            "(starting with a letter or digit)"
        )
    return campaign


def _batches(items: Iterable[CallRequest], size: int) -> Iterator[list[CallRequest]]:
    batch: list[CallRequest] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class Enqueuer:
    """Holds one Redis client and one broker connection for a whole enqueue."""

    def __init__(self, settings: Settings, app: Celery | None = None) -> None:
        self.settings = settings
        self.app = app if app is not None else make_app(settings)
        self.ledger = Ledger(make_redis(settings.require_redis_url()), Keys(settings.key_prefix))

    def enqueue(
        self,
        campaign: str,
        calls: Iterable[CallRequest],
        *,
        batch_size: int = 1000,
        progress: Progress | None = None,
        result: EnqueueResult | None = None,
    ) -> EnqueueResult:
        check_campaign(campaign)
        result = result or EnqueueResult(campaign)
        seen: dict[str, int] = {}
        messages = TaskMessages(self.app)
        for batch in _batches(calls, batch_size):
            records: list[tuple[str, dict[str, str]]] = []
            for call in batch:
                rid = request_id(campaign, call.row_key())
                first = seen.get(rid)
                if first is not None:
                    result.duplicates.append(
                        RowError(
                            call.line, "row", f"the same call as line {first}; kept line {first}"
                        )
                    )
                    continue
                seen[rid] = call.line
                records.append((rid, call.to_record()))
            codes = self.ledger.enqueue_many(
                campaign,
                records,
                queue_key=messages.queue_key,
                messages=[messages.encode(rid) for rid, _ in records],
                queued_overdue=self.settings.queued_overdue_seconds,
            )
            for code in codes:
                if code == 1:
                    result.accepted += 1
                else:
                    result.existing += 1
                    result.republished += code == 2
            if progress is not None:
                progress(len(batch))
        return result

    def enqueue_file(
        self,
        source: Any,
        campaign: str,
        *,
        strict: bool = False,
        batch_size: int = 1000,
        progress: Progress | None = None,
    ) -> EnqueueResult:
        """Validate every row of a CSV file and enqueue the good ones.

        A bad row is reported with its line and field and never stops the good rows; with
        ``strict``, any bad row rejects the whole file and nothing is enqueued.
        """
        check_campaign(campaign)
        result = EnqueueResult(campaign)
        default_caller = self.settings.exotel_caller_id or None

        def good_rows() -> Iterator[CallRequest]:
            for item in read_rows(source, default_caller_id=default_caller):
                if isinstance(item, CallRequest):
                    yield item
                elif isinstance(item, RowError):
                    result.rejected.append(item)
                    if progress is not None:
                        progress(1)
                else:
                    result.issues.append(item)

        if strict:
            rows = list(good_rows())
            if result.rejected:
                return result
            return self.enqueue(
                campaign, rows, batch_size=batch_size, progress=progress, result=result
            )
        return self.enqueue(
            campaign, good_rows(), batch_size=batch_size, progress=progress, result=result
        )
