"""Exotel's voice API: the HTTP client, the parameters of Calls/connect, reading and
classifying replies into the four outcomes, and the numbers a call is matched by.

May import: callq.settings, callq.errors.
"""
