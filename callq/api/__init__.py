"""The HTTP API for campaign schedulers (Starlette): enqueue, status, report, pause, resume,
cancel and set, over the same code as ``python -m producer``, behind a bearer token
(``API_TOKEN``). ``python -m callq.api`` (or ``callq api``) serves it; ``callq.api.app:app``
for uvicorn. Importing this package reads no environment.

May import: callq.intake, and below.
"""
