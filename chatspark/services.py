"""The long-lived parts a running app holds, built once in the lifespan and handed to handlers."""

from __future__ import annotations

import msgspec

from chatspark.agent_registry import AgentRegistry
from chatspark.analytics import Analytics
from chatspark.config import Config
from chatspark.conversations import Conversations
from chatspark.idempotent_turns import IdempotentTurns
from chatspark.leads import Leads
from chatspark.models import ModelRouter
from chatspark.pagination import Cursors
from chatspark.store import Store
from chatspark.training import Training
from chatspark.turn import Turns
from chatspark.visitors import Visitors
from chatspark.widget_limits import WidgetLimits
from chatspark.webhooks import Webhooks


class Services(msgspec.Struct, kw_only=True):
    config: Config
    store: Store
    models: ModelRouter
    turns: Turns
    agents: AgentRegistry
    conversations: Conversations
    cursors: Cursors
    idempotent_turns: IdempotentTurns
    training: Training
    visitors: Visitors
    widget_limits: WidgetLimits
    leads: Leads
    webhooks: Webhooks
    analytics: Analytics
