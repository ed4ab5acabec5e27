"""The Celery worker: the app (configured lazily from the settings), the thin tasks, and the
per-process runtime. ``celery -A worker worker -Q calls`` runs it.

May import: everything in callq.
"""
