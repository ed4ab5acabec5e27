"""The Celery worker: ``celery -A worker worker -Q calls``.

Kept thin: the app lives in :mod:`callq.worker.app`, the tasks in :mod:`callq.worker.tasks`,
and the work itself in :mod:`callq.dialing.dialer`.
"""

from callq.worker.app import app

__all__ = ["app"]
