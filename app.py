"""The ASGI entry point: `uvicorn app:app` (or `chatspark serve`, which adds workers and dev defaults)."""

from chatspark.web import app_from_environment

app = app_from_environment()
