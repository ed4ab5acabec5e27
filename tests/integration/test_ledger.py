"""The ledger's state machine on a real Redis: every transition atomic, counters exact."""

from __future__ import annotations

import time

import pytest
import redis

from callq.store.ledger import ENQUEUE_CHUNK, Ledger

CAMPAIGN = "c1"


def rid(n: int) -> str:
    return f"{CAMPAIGN}:{n:020d}"


def enqueue(ledger: Ledger, n: int = 3) -> list[str]:
    ids = [rid(i) for i in range(n)]
    codes = ledger.enqueue_many(
        CAMPAIGN, [(r, {"from": "+919000000000", "to": "+919000000001"}) for r in ids]
    )
    assert codes == [1] * n
    return ids


def recount(ledger: Ledger, campaign: str = CAMPAIGN) -> dict[str, int]:
    counts: dict[str, int] = {}
    for rec in ledger.iter_records(campaign):
        counts[rec["state"]] = counts.get(rec["state"], 0) + 1
    return counts


def assert_counters_match(ledger: Ledger) -> None:
    status = ledger.status(CAMPAIGN)
    nonzero = {k: v for k, v in status.states.items() if v}
    assert nonzero == recount(ledger)
    assert status.total == sum(nonzero.values())


def claim(ledger: Ledger, r: str, lease: float = 30.0):  # type: ignore[no-untyped-def]
    return ledger.claim(r, lease_seconds=lease, early_tolerance=0.5, worker="test")


def test_given_the_same_calls_when_enqueued_twice_then_nothing_is_added(ledger: Ledger) -> None:
    ids = enqueue(ledger)
    again = ledger.enqueue_many(CAMPAIGN, [(r, {"from": "x"}) for r in ids])
    assert again == [2, 2, 2]  # exist, still queued
    claim(ledger, ids[0])
    assert ledger.enqueue_many(CAMPAIGN, [(ids[0], {})]) == [0]
    assert ledger.status(CAMPAIGN).total == 3
    assert ledger.get(ids[1])["from"] == "+919000000000"  # never overwritten
    assert_counters_match(ledger)


def test_given_a_queued_call_when_claimed_twice_then_only_one_claim_wins(ledger: Ledger) -> None:
    (r,) = enqueue(ledger, 1)
    first = claim(ledger, r)
    second = claim(ledger, r)
    assert (
        first.claimed
        and first.attempts == 1
        and first.record is not None
        and first.record.to == "+919000000001"
    )
    assert not second.claimed and second.code == "skip" and second.state == "dialing"
    assert_counters_match(ledger)


def test_given_a_sent_attempt_when_originated_then_sid_is_indexed(ledger: Ledger) -> None:
    (r,) = enqueue(ledger, 1)
    c = claim(ledger, r)
    assert ledger.mark_sent(r, c.claim, lease_seconds=30)
    fin = ledger.finish(r, c.claim, "originated", sid="abc123", log={"outcome": "originated"})
    assert fin.ok and fin.state == "originated"
    assert ledger.request_for_sid("abc123") == r
    rec = ledger.get(r)
    assert rec["state"] == "originated" and rec["sid"] == "abc123"
    assert ledger.attempts_log(r) == [{"outcome": "originated"}]
    # A stale or repeated finish changes nothing.
    assert not ledger.finish(r, c.claim, "failed", error="late").ok
    assert not ledger.finish(r, "not-the-token", "originated", sid="zzz").ok
    assert ledger.get(r)["state"] == "originated"
    assert_counters_match(ledger)


def test_given_not_placed_when_retrying_then_an_early_copy_is_refused_and_a_due_one_claims(
    ledger: Ledger,
) -> None:
    (r,) = enqueue(ledger, 1)
    c = claim(ledger, r)
    ledger.mark_sent(r, c.claim, lease_seconds=30)
    assert ledger.finish(r, c.claim, "retrying", error="500", next_in=2.0, look_again_in=10).ok
    early = claim(ledger, r)
    assert early.code == "early"
    ledger.redis.hset(ledger.keys.call(r), "next_at", 0)
    again = claim(ledger, r)
    assert again.claimed and again.attempts == 2
    assert_counters_match(ledger)


def test_given_a_lost_worker_when_its_lease_expires_then_unsent_is_requeued_and_sent_is_in_doubt(
    ledger: Ledger,
) -> None:
    unsent, sent, alive = enqueue(ledger, 3)
    claim(ledger, unsent, lease=0.05)
    c = claim(ledger, sent, lease=0.05)
    assert ledger.mark_sent(sent, c.claim, lease_seconds=0.1)
    claim(ledger, alive, lease=30)
    time.sleep(0.25)
    due = set(ledger.due())
    assert due == {unsent, sent}
    verdicts = {r: ledger.sweep(r, reconcile_in=60, overdue_in=60) for r in due}
    assert verdicts == {unsent: "requeue", sent: "in_doubt"}
    # A second sweeper running at the same time gets nothing to do.
    assert {ledger.sweep(r, reconcile_in=60, overdue_in=60) for r in due} == {"not_due"}
    assert ledger.get(unsent)["state"] == "queued"  # back to the state it was claimed from
    assert ledger.get(unsent)["attempts"] == "0"  # the unsent attempt does not count
    assert ledger.get(sent)["state"] == "in_doubt"
    # The in-doubt call can never be claimed again by a stray message.
    assert claim(ledger, sent).code == "skip"
    assert claim(ledger, unsent).claimed
    assert_counters_match(ledger)


def test_given_an_expired_lease_when_marking_sent_then_the_worker_must_not_send(
    ledger: Ledger,
) -> None:
    (r,) = enqueue(ledger, 1)
    c = claim(ledger, r, lease=0.05)
    time.sleep(0.1)
    assert not ledger.mark_sent(r, c.claim, lease_seconds=30)


def test_given_a_late_reply_after_in_doubt_when_finished_then_it_settles_the_call(
    ledger: Ledger,
) -> None:
    (r,) = enqueue(ledger, 1)
    c = claim(ledger, r, lease=0.05)
    ledger.mark_sent(r, c.claim, lease_seconds=0.05)
    time.sleep(0.1)
    assert ledger.sweep(r, reconcile_in=60, overdue_in=60) == "in_doubt"
    assert ledger.finish(r, c.claim, "originated", sid="late1").ok
    assert ledger.get(r)["state"] == "originated"
    assert_counters_match(ledger)


def test_given_a_campaign_when_cancelled_then_only_undialled_calls_are_cancelled(
    ledger: Ledger,
) -> None:
    queued, dialing, done, retrying = enqueue(ledger, 4)
    claim(ledger, dialing)
    c = claim(ledger, done)
    ledger.mark_sent(done, c.claim, lease_seconds=30)
    ledger.finish(done, c.claim, "originated", sid="s1")
    c = claim(ledger, retrying)
    ledger.mark_sent(retrying, c.claim, lease_seconds=30)
    ledger.finish(retrying, c.claim, "retrying", next_in=5, look_again_in=10)
    assert ledger.cancel(CAMPAIGN) == 2
    states = {r: ledger.get(r)["state"] for r in (queued, dialing, done, retrying)}
    assert states == {
        queued: "cancelled",
        dialing: "dialing",
        done: "originated",
        retrying: "cancelled",
    }
    assert ledger.cancel(CAMPAIGN) == 0
    assert_counters_match(ledger)


def test_given_a_release_when_nothing_was_sent_then_the_attempt_is_given_back(
    ledger: Ledger,
) -> None:
    (r,) = enqueue(ledger, 1)
    c = claim(ledger, r)
    assert ledger.release(r, c.claim, republish_after=5)
    rec = ledger.get(r)
    assert rec["state"] == "queued" and rec["attempts"] == "0"
    c2 = claim(ledger, r)
    assert c2.claimed and c2.attempts == 1
    assert not ledger.release(r, c.claim, republish_after=5)  # the old claim is not this one
    ledger.mark_sent(r, c2.claim, lease_seconds=30)
    assert not ledger.release(r, c2.claim, republish_after=5)  # sent: never released
    assert_counters_match(ledger)


@pytest.mark.parametrize("bad", ["nocolon", ":x", "bad campaign:x"])
def test_given_a_malformed_request_id_when_claimed_then_it_is_refused(
    ledger: Ledger, bad: str
) -> None:
    with pytest.raises(ValueError, match="not a request id"):
        claim(ledger, bad)


def test_given_a_stalled_worker_whose_lease_expired_when_it_wakes_then_its_old_claim_cannot_send(
    ledger: Ledger,
) -> None:
    """The attempt number is reused after an unsent lease expires (the attempt is uncounted);
    the claim token is not. A stalled worker must never pass the fence on the next claim."""
    (r,) = enqueue(ledger, 1)
    stalled = claim(ledger, r, lease=0.05)
    time.sleep(0.1)
    assert ledger.sweep(r, reconcile_in=60, overdue_in=60) == "requeue"
    fresh = claim(ledger, r)
    assert fresh.attempts == stalled.attempts  # the same attempt number...
    assert not ledger.mark_sent(r, stalled.claim, lease_seconds=30)  # ...but not the same claim
    assert not ledger.finish(r, stalled.claim, "originated", sid="x").ok
    assert not ledger.release(r, stalled.claim, republish_after=5)
    assert ledger.mark_sent(r, fresh.claim, lease_seconds=30)
    assert_counters_match(ledger)


def test_given_a_queued_call_whose_message_may_be_lost_when_overdue_then_the_sweeper_republishes_it(
    ledger: Ledger,
) -> None:
    r = rid(1)
    queue = f"{ledger.keys.prefix}.test-queue"  # a pushed message (a priority call's)
    ledger.enqueue_many(
        CAMPAIGN,
        [(r, {"from": "+919000000000"})],
        queue_key=queue,
        messages=["m"],
        queued_overdue=0.05,
    )
    assert ledger.due() == []
    time.sleep(0.1)
    assert ledger.due() == [r]
    assert ledger.sweep(r, reconcile_in=60, overdue_in=60, queued_overdue_in=60) == "requeue"
    assert ledger.get(r)["state"] == "queued"  # unchanged: only a copy of its task goes out
    assert ledger.due() == []
    claim(ledger, r)
    cancelled = rid(2)
    ledger.enqueue_many(
        CAMPAIGN, [(cancelled, {})], queue_key=queue, messages=["m"], queued_overdue=0.05
    )
    ledger.cancel(CAMPAIGN)
    assert cancelled not in ledger.redis.zrange(ledger.keys.deadlines(), 0, -1)


def test_given_a_call_marked_sent_but_held_back_when_released_as_unsent_then_it_is_requeued(
    ledger: Ledger,
) -> None:
    (r,) = enqueue(ledger, 1)
    c = claim(ledger, r)
    assert ledger.mark_sent(r, c.claim, lease_seconds=30)
    assert not ledger.release(r, c.claim, republish_after=5)  # sent: refused by default
    assert ledger.release(r, c.claim, republish_after=5, unsent=True)  # the worker knows
    rec = ledger.get(r)
    assert (rec["state"], rec["attempts"], rec["sent"]) == ("queued", "0", "0")
    assert_counters_match(ledger)


def test_given_sent_calls_when_they_settle_then_the_unresolved_index_holds_only_the_open_ones(
    ledger: Ledger,
) -> None:
    # Issue 13 R1: reconcile decides jointly over every unresolved request with the same
    # numbers, so the index must hold exactly the calls dialling past their sent mark or in
    # doubt, whichever way each leaves (finish, release as unsent, callback).
    from callq.store.callbacks import CallbackEvent, CallbackStore

    parties = "9000000000:9000000001"
    ids = enqueue(ledger, 6)
    tokens = {}
    for r in ids:
        c = claim(ledger, r, lease=0.2 if r == ids[5] else 30.0)
        assert ledger.mark_sent(
            r, c.claim, lease_seconds=0.2 if r == ids[5] else 30.0, parties=parties
        )
        tokens[r] = c.claim
    assert ledger.unresolved(parties) == sorted(ids)
    assert ledger.unresolved("9000000000:900000000") == []  # a prefix is not a match
    assert ledger.finish(ids[0], tokens[ids[0]], "originated", sid="s0").ok
    assert ledger.finish(ids[1], tokens[ids[1]], "retrying", next_in=1, look_again_in=5).ok
    assert ledger.finish(ids[2], tokens[ids[2]], "in_doubt", look_again_in=60).ok
    assert ledger.release(ids[3], tokens[ids[3]], republish_after=5, unsent=True)
    CallbackStore(ledger.redis, ledger.keys).apply(CallbackEvent("s4", "busy", ids[4]))
    time.sleep(0.3)
    assert ledger.sweep(ids[5], reconcile_in=60, overdue_in=60) == "in_doubt"
    assert ledger.unresolved(parties) == sorted([ids[2], ids[5]])
    assert ledger.finish(ids[2], tokens[ids[2]], "failed", error="x").ok  # a late reply
    assert ledger.unresolved(parties) == [ids[5]]
    assert ledger.get(ids[5])["parties"] == parties


def test_given_a_campaign_id_equal_to_the_prefix_when_paged_then_every_page_moves_on(
    ledger: Ledger,
) -> None:
    names = ["page-c1", "page-c10", "page-c11", "page-c2"]
    for name in names:
        ledger.enqueue_many(name, [(f"{name}:r1", {"from": "x"})])
    seen: list[str] = []
    after = ""
    for _ in range(10):  # a page that repeats itself would never end
        page, nxt = ledger.campaign_page(after=after, limit=1, prefix="page-c1")
        seen += [s.campaign for s in page]
        if nxt is None:
            break
        after = nxt
    assert seen == ["page-c1", "page-c10", "page-c11"]


def test_given_a_batch_over_one_script_call_when_enqueued_then_each_row_is_judged_in_order(
    ledger: Ledger,
) -> None:
    k = ledger.keys
    n = ENQUEUE_CHUNK + 5  # two enqueue.lua calls in one round trip
    ids = [rid(i) for i in range(n)]
    first = ledger.enqueue_many(CAMPAIGN, [(ids[0], {"from": "+919000000000"})])
    claim(ledger, ids[0])  # dialling now: 0, left alone
    records = [
        (r, {"from": "+91900000000" + str(i % 10), "custom_field": "ü"}) for i, r in enumerate(ids)
    ]
    records.insert(3, (ids[1], {"from": "again"}))  # the same call twice in one batch
    codes = ledger.enqueue_many(CAMPAIGN, records)
    assert first == [1]
    assert codes == [0, 1, 1, 2] + [1] * (n - 3)
    assert ledger.get(ids[1])["from"] == "+919000000001"  # the first row of the two wins
    assert ledger.get(ids[2])["custom_field"] == "ü"
    assert ledger.get(ids[2])["parked"] == "new"
    assert ledger.redis.lrange(k.campaign_calls(CAMPAIGN), 0, -1) == ids  # enqueue order
    assert ledger.redis.zcard(k.campaign_parked(CAMPAIGN)) == n - 1  # all but the claimed one
    assert ledger.redis.zscore(k.wake(), CAMPAIGN) is not None
    assert ledger.redis.zrange(k.campaigns_by_id(), 0, -1) == [CAMPAIGN]
    assert ledger.status(CAMPAIGN).total == n
    assert_counters_match(ledger)
    ledger.cancel(CAMPAIGN)
    assert ledger.enqueue_many(CAMPAIGN, [(rid(n), {}), (rid(n + 1), {})]) == [3, 3]
    assert ledger.status(CAMPAIGN).total == n


def test_given_a_script_call_failing_midway_when_rerun_then_each_call_counts_once(
    ledger: Ledger,
) -> None:
    # Lua aborts a script at an error but keeps what it wrote before: rows 1-5 of this script
    # call must not stay written without their counters, calls-list entry and campaign.
    k = ledger.keys
    ids = [rid(i) for i in range(10)]
    records = [(r, {"from": "+919000000000"}) for r in ids]
    ledger.redis.set(k.call(ids[5]), "not a hash")  # any error a command raises (WRONGTYPE)
    with pytest.raises(redis.ResponseError):
        ledger.enqueue_many(CAMPAIGN, records)
    ledger.redis.delete(k.call(ids[5]))
    codes = ledger.enqueue_many(CAMPAIGN, records)  # the re-run, the documented recovery
    assert ledger.status(CAMPAIGN).total == 10
    assert ledger.redis.lrange(k.campaign_calls(CAMPAIGN), 0, -1) == ids
    assert ledger.redis.smembers(k.campaigns()) == {CAMPAIGN}
    assert_counters_match(ledger)
    assert codes == [1] * 10  # the failed script call wrote nothing at all


def test_given_a_priority_batch_over_one_script_call_when_enqueued_then_each_row_is_pushed_as_alone(
    ledger: Ledger,
) -> None:
    k = ledger.keys
    queue = f"{k.prefix}.test-queue"
    n = ENQUEUE_CHUNK + 3
    ids = [rid(i) for i in range(n)]
    assert ledger.enqueue_many(CAMPAIGN, [(ids[0], {"from": "+919000000000"})]) == [1]  # parked
    records = [(r, {"from": "+919000000001", "custom_field": 'a "b"\nc'}) for r in ids]
    records.insert(ENQUEUE_CHUNK, (ids[1], {}))  # a repeat, in the second script call
    messages = [f"m-{r}" for r, _ in records]
    codes = ledger.enqueue_many(
        CAMPAIGN, records, queue_key=queue, messages=messages, queued_overdue=600.0
    )
    assert codes == [2] + [1] * (ENQUEUE_CHUNK - 1) + [2] + [1] * (n - ENQUEUE_CHUNK)
    assert sorted(ledger.redis.lrange(queue, 0, -1)) == sorted(messages)  # one per row
    assert set(ledger.redis.zrange(k.deadlines(), 0, -1)) == set(ids[1:])  # the created ones
    assert ledger.redis.zrange(k.campaign_parked(CAMPAIGN), 0, -1) == [ids[0]]
    assert ledger.get(ids[0])["from"] == "+919000000000"  # never changed
    assert ledger.get(ids[2])["custom_field"] == 'a "b"\nc'
    assert "parked" not in ledger.get(ids[2])
    assert ledger.redis.lrange(k.campaign_calls(CAMPAIGN), 0, -1) == ids
    assert_counters_match(ledger)


def test_given_fields_with_odd_characters_when_enqueued_in_a_batch_then_each_is_stored_as_given(
    ledger: Ledger,
) -> None:
    # The batch carries each row's fields as JSON, decoded in Lua by cjson.
    odd = ["", "ü", "😀𝄞", "\u2028", "1e5", "0.10", "-0", "[]", "null", 'a "q"', "l1\nl2\r\n"]
    odd += ["\t\x00\x01\x1f\x7f", "back\\slash", "\\u00e9", "\ufeff", "x" * 3000]
    ids = [rid(i) for i in range(len(odd))]
    codes = ledger.enqueue_many(
        CAMPAIGN, [(r, {"custom_field": v, "extra": v}) for r, v in zip(ids, odd, strict=True)]
    )
    assert codes == [1] * len(odd)
    for r, v in zip(ids, odd, strict=True):
        rec = ledger.get(r)
        assert (rec["custom_field"], rec["extra"], rec["state"]) == (v, v, "queued")
