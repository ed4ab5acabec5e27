"""callq: the core of the outbound call queue (ledger, limiter, Exotel client, outcomes)."""
