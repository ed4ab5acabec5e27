"""A campaign's controls as values: pause, cancel, priority, account, the calling window,
send_at/end_at, redials, weight; why calls are held back; fair shares of an account's permits.

Pure: no Redis, no HTTP. May import: callq.settings, callq.errors.
"""
