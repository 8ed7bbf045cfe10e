"""The long-lived parts a running app holds, built once in the lifespan and handed to handlers."""

from __future__ import annotations

import msgspec

from chatspark.chat import Chat
from chatspark.config import Config
from chatspark.models import ModelRouter
from chatspark.store import Store


class Services(msgspec.Struct, kw_only=True):
    config: Config
    store: Store
    models: ModelRouter
    chat: Chat
