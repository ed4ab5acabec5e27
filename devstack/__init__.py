"""The local stack, for development, the demo, tests, benches and the chaos run: an embedded
Redis, one way to start and stop child processes, worker pools, ``make run`` and ``make up``,
and the demo's live progress. Not part of the product: callq never imports it.

May import: callq, worker, producer, callbacks, config, simulator.
"""
