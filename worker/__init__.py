"""The Celery worker: ``celery -A worker worker -Q calls``.

Kept thin: the app lives in :mod:`worker.app`, tasks in :mod:`worker.tasks`, and the work
itself in :mod:`callq.dialer`.
"""

from worker.app import app

__all__ = ["app"]
