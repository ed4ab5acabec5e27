"""The StatusCallback receiver: a small ASGI app (Starlette), its body parsing and its
OpenAPI document. ``python -m callbacks`` serves it.

May import: callq.store, and below.
"""
