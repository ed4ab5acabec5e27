"""The StatusCallback receiver (an ASGI app): ``python -m callbacks --host H --port P``.

``callbacks.app:app`` for uvicorn or gunicorn; :func:`callbacks.app.create_app` to build one
with explicit settings. Importing this package reads no environment.
"""
