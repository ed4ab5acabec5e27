"""Everything in Redis: key names, the Lua transitions, the call record, the ledger, the
StatusCallback store, the controls cache and the scrape-time gauges.

May import: callq.campaign, callq.exotel, and the base modules.
"""
