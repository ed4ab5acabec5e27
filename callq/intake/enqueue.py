"""Bulk enqueue: validated rows -> ledger records, parked for the workers, in batches.

Each call's record and its pointer are written by one script, atomically (one script call
per 250 calls, each row judged as if alone), and a batch goes in one round trip: a
record never exists without a way back to a worker. The
pointer is the campaign's parked set: the sweepers feed parked calls to the `calls` queue at
the account's pace, so a 100k-call file never sits in the shared list ahead of another
campaign's calls. A priority campaign's calls get their ``place_call`` message on
`calls.priority` at once instead. Enqueueing the same rows twice adds no call: the record
exists, and calls still ``queued`` are parked (or pushed) again (harmless: the claim is
atomic). That makes a re-run the recovery after anything went wrong mid-file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from celery import Celery

from callq.campaign.controls import CampaignOptions
from callq.ids import CAMPAIGN_RE
from callq.intake.csvread import read_rows
from callq.intake.request import CallRequest, FileIssue, RowError, request_id
from callq.settings import ConfigError, Settings
from callq.store.connect import broker_redis_for, redis_for
from callq.store.events import EventFlags
from callq.store.keys import Keys
from callq.store.layout import check_layout
from callq.store.ledger import Ledger
from callq.transport.config import make_app
from callq.transport.messages import TaskMessages
from callq.transport.queues import PRIORITY_QUEUE

Progress = Callable[[int], None]
Dedupe = Literal["first", "last", "all"]
DEDUPE_CHOICES: tuple[Dedupe, ...] = ("first", "last", "all")


@dataclass
class EnqueueResult:
    campaign: str
    accepted: int = 0  # new calls written and published
    existing: int = 0  # already in the ledger (nothing added)
    republished: int = 0  # of those, still queued: task published again
    refused: int = 0  # the campaign was cancelled: nothing written
    duplicates: list[RowError] = field(default_factory=list)  # same parties twice in this input
    rejected: list[RowError] = field(default_factory=list)
    issues: list[FileIssue] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign,
            "accepted": self.accepted,
            "existing": self.existing,
            "republished": self.republished,
            "refused": self.refused,
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


def options_meta(options: CampaignOptions | None, settings: Settings) -> dict[str, str]:
    """The meta fields ``options`` set, validated; the account must be one ``settings`` know.
    Raises ValueError naming the option at fault."""
    fields = options.to_meta() if options is not None else {}
    if fields.get("account"):
        try:
            settings.for_account(fields["account"])
        except ConfigError as exc:
            raise ValueError(f"account: {exc}") from None
    return fields


def _batches(items: Iterable[CallRequest], size: int) -> Iterator[list[CallRequest]]:
    batch: list[CallRequest] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def confirming(ledger: Ledger, settings: Settings) -> Ledger:
    """``ledger``, its campaign operations acknowledged by replicas before the caller is told
    of them (``REDIS_WAIT_REPLICAS``, the policy of the sent mark: callq.dialing.dialer): a
    batch, a cancel or a pause the master alone holds could be lost by a failover."""

    def replicas() -> int:
        if settings.wait_replicas == 0 or settings.wait_strict:
            return settings.wait_replicas
        return min(settings.wait_replicas, ledger.replicas_connected())

    return ledger.confirm_writes(replicas, settings.redis_wait_timeout_ms)


class Enqueuer:
    """Holds one Redis client and one broker connection for a whole enqueue."""

    def __init__(self, settings: Settings, app: Celery | None = None) -> None:
        self.settings = settings
        self.app = app if app is not None else make_app(settings)
        keys = Keys.for_settings(settings)
        client = redis_for(settings)
        check_layout(client, keys, settings)
        self.ledger = confirming(
            Ledger(
                client,
                keys,
                EventFlags.for_settings(settings),
                broker=broker_redis_for(settings),
            ),
            settings,
        )

    def set_options(self, campaign: str, options: CampaignOptions | None) -> dict[str, str]:
        """Validate and store the campaign's controls; returns the meta hash as it now is.
        Raises ValueError naming the option at fault (an unknown account included)."""
        check_campaign(campaign)
        self.ledger.set_controls(campaign, options_meta(options, self.settings))
        return self.ledger.meta(campaign)

    def enqueue(
        self,
        campaign: str,
        calls: Iterable[CallRequest],
        *,
        batch_size: int = 1000,
        progress: Progress | None = None,
        result: EnqueueResult | None = None,
        options: CampaignOptions | None = None,
        dedupe: Dedupe = "first",
    ) -> EnqueueResult:
        """Enqueue validated calls. ``options`` sets the campaign's controls first (priority,
        account, window, end_at, redials ...). ``dedupe``: the same parties dialled twice in
        this input (the same From and To; for a call flow the same From) keeps the ``first``
        row (default) or the ``last``; ``all`` dials each row. Every dropped row is reported
        with both lines. The same row twice is always one call."""
        check_campaign(campaign)
        if dedupe not in DEDUPE_CHOICES:
            raise ValueError(f"dedupe: {dedupe!r} is not one of {', '.join(DEDUPE_CHOICES)}")
        result = result or EnqueueResult(campaign)
        meta = self.set_options(campaign, options)
        if meta.get("cancelled") == "1":
            result.issues.append(
                FileIssue(f"campaign {campaign} was cancelled: its calls are refused")
            )
        # A priority call's message goes straight onto `calls.priority`. Any other call is
        # parked, and the sweepers feed its campaign to `calls` at the account's pace.
        priority = meta.get("priority") == "1"
        messages = TaskMessages(self.app, queue=PRIORITY_QUEUE) if priority else None
        for batch in _batches(self._dedupe(calls, dedupe, result), batch_size):
            records = [(request_id(campaign, call.row_key()), call.to_record()) for call in batch]
            codes = self.ledger.enqueue_many(
                campaign,
                records,
                queue_key=messages.queue_key if messages else "",
                messages=[messages.encode(rid) for rid, _ in records] if messages else None,
                queued_overdue=self.settings.queued_overdue_seconds,
                replicas=self.ledger.replicas_to_confirm(),
                replica_timeout_ms=self.settings.redis_wait_timeout_ms,
            )
            for code in codes:
                if code == 1:
                    result.accepted += 1
                elif code == 3:
                    result.refused += 1
                else:
                    result.existing += 1
                    result.republished += code == 2
            if progress is not None:
                progress(len(batch))
        return result

    @staticmethod
    def _dedupe(
        calls: Iterable[CallRequest], dedupe: Dedupe, result: EnqueueResult
    ) -> Iterator[CallRequest]:
        """Drop (and report) the same call twice, and, unless ``all``, the same parties
        dialled twice (:meth:`CallRequest.parties`: the same From and To for "connect two
        numbers", so one agent number in From on every row is a campaign, not a duplicate;
        the same From for a call flow). ``first`` keeps the first row, ``last`` the last."""

        def duplicate(call: CallRequest, kept: int) -> RowError:
            column, who = call.describe_parties()
            return RowError(call.line, column, f"{who} again, as on line {kept}; kept line {kept}")

        if dedupe == "last":
            rows = list(calls)
            last = {call.parties(): call.line for call in rows}
            for call in rows:
                if last[call.parties()] != call.line:
                    result.duplicates.append(duplicate(call, last[call.parties()]))
            calls = [call for call in rows if last[call.parties()] == call.line]
        seen_key: dict[str, int] = {}
        seen_parties: dict[tuple[str, ...], int] = {}
        for call in calls:
            key = call.row_key()
            first = seen_key.get(key)
            if first is not None:
                result.duplicates.append(
                    RowError(call.line, "row", f"the same call as line {first}; kept line {first}")
                )
                continue
            first = seen_parties.get(call.parties()) if dedupe == "first" else None
            if first is not None:
                result.duplicates.append(duplicate(call, first))
                continue
            seen_key[key] = call.line
            seen_parties.setdefault(call.parties(), call.line)
            yield call

    def enqueue_file(
        self,
        source: Any,
        campaign: str,
        *,
        strict: bool = False,
        batch_size: int = 1000,
        progress: Progress | None = None,
        options: CampaignOptions | None = None,
        dedupe: Dedupe = "first",
    ) -> EnqueueResult:
        """Validate every row of a CSV file and enqueue the good ones.

        A bad row is reported with its line and field and never stops the good rows; with
        ``strict``, any bad row rejects the whole file and nothing is enqueued.
        """
        check_campaign(campaign)
        default_caller = self.settings.exotel_caller_id or None
        return self.enqueue_items(
            read_rows(source, default_caller_id=default_caller),
            campaign,
            strict=strict,
            batch_size=batch_size,
            progress=progress,
            options=options,
            dedupe=dedupe,
        )

    def enqueue_items(
        self,
        items: Iterable[CallRequest | RowError | FileIssue],
        campaign: str,
        *,
        strict: bool = False,
        batch_size: int = 1000,
        progress: Progress | None = None,
        options: CampaignOptions | None = None,
        dedupe: Dedupe = "first",
    ) -> EnqueueResult:
        """What a reader yields (:func:`~callq.intake.csvread.read_rows` of a file,
        :func:`~callq.intake.csvread.read_cells` of rows already split), enqueued as
        :meth:`enqueue_file` says: the good rows, each bad one reported; with ``strict``
        nothing when any row is bad."""
        check_campaign(campaign)
        result = EnqueueResult(campaign)

        def good_rows() -> Iterator[CallRequest]:
            for item in items:
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
                campaign,
                rows,
                batch_size=batch_size,
                progress=progress,
                result=result,
                options=options,
                dedupe=dedupe,
            )
        return self.enqueue(
            campaign,
            good_rows(),
            batch_size=batch_size,
            progress=progress,
            result=result,
            options=options,
            dedupe=dedupe,
        )
