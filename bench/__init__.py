"""Benchmarks of the call queue: ``python -m bench`` (or ``make bench``).

Runs side by side, on one machine, in one run:

1. producer throughput: ``Enqueuer.enqueue_file`` (validation + ledger record + parked)
   against a plain ``app.send_task`` loop, plus parse-only rows/s and Redis memory per call;
2. limiter cost: ``Limiter.reserve()`` permits/s and round trips per permit at 1, 8 and 64
   client threads, with a rate so high that the cost, not the limit, is measured;
3. limit strictness: our limiter, two naive fixed windows, the ``limits`` library's moving
   window and Celery's own ``rate_limit`` (3 real workers) driving the Exotel simulator, as
   the simulator's strict sliding window sees them (``strictness``, ``celery_rate``);
4. worker memory: our real worker with 100 slow calls in flight, threads against prefork
   against gevent, RSS/PSS of each process tree from /proc (``memory``);
5. callback receiver: callbacks/s and latency of ``python -m callbacks`` at 1 and 4 uvicorn
   workers, from a light asyncio load generator (``receiver``);
6. priority latency: a priority call's wait while a campaign saturates a time-scaled limit,
   p50/p99, through real workers (``priority``).

It writes ``docs/benchmarks.md`` (``--out`` to change) and its plots under ``docs/img/``,
keeping the hand-written text above the generated part. Timings are reported, never
asserted: the machine may be shared.
"""
