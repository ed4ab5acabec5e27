"""callq: the outbound call queue, the product. Its packages are layers; each imports only
the layers below it (``[tool.importlinter]`` in pyproject.toml holds the contract, and
``tests/unit/test_layers.py`` fails when an import runs upward)::

    worker/                    the Celery app, its thin tasks, the per-process runtime
    sweeping/ intake/ receiver/  the feed and sweeper; rows into the ledger; StatusCallbacks
    transport/                 queue names and place_call messages (starts no Celery app)
    dialing/                   one attempt, the limiter, the breaker, retries, reconcile
    store/                     Redis: keys, Lua scripts, the call record, the ledger
    exotel/                    the HTTP client, Calls/connect parameters, reading replies
    settings                   the settings (pydantic-settings)
    campaign/                  a campaign's controls, window and fair shares (pure)
    logs, metrics, ids, errors the base modules

It never imports the entry points (worker/, producer/, callbacks/, config/ at the top level),
the local stack (devstack/) or the tools (simulator/, bench/, chaos/).
"""
