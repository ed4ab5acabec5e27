"""Benchmarks of the call queue: ``python -m bench`` (or ``make bench``).

Runs side by side, on one machine, in one process:

1. producer throughput: ``Enqueuer.enqueue_file`` (validation + ledger + batched publish)
   against a plain ``app.send_task`` loop, plus parse-only rows/s and Redis memory per call;
2. limiter cost: ``Limiter.reserve()`` permits/s and round trips per permit at 1, 8 and 64
   client threads, with a rate so high that the cost, not the limit, is measured;
3. limit strictness: our limiter and a naive fixed-window limiter driving the Exotel
   simulator, as the simulator's strict sliding window sees them.

It writes ``docs/benchmarks.md`` (``--out`` to change), keeping the hand-written text above
the generated part. Timings are reported, never asserted: the machine may be shared.
"""
