"""``callbacks.app:app`` for uvicorn or gunicorn (``uvicorn callbacks.app:app``).

Kept thin: the receiver lives in :mod:`callq.receiver.app`.
"""

from callq.receiver.app import app, create_app

__all__ = ["app", "create_app"]
