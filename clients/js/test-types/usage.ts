// The hand-written declarations (index.d.ts) as a TypeScript user meets them: this file must
// type-check (tsc -p test-types, run by tests/test_js_client.py), and each @ts-expect-error line
// must be an error. It is never run.
import ChatSparkDefault, {
  AgentNotFoundError, ChatSpark, ChatSparkError, ERRORS_BY_CODE, NotFoundError, RateLimitExceededError, StreamingError,
  type Agent, type ChatDone, type ChatEvent, type ChatResponse, type Lead,
} from "@chatspark/client";

declare const apiKey: string;

export async function usage(): Promise<void> {
  const client: ChatSpark = new ChatSparkDefault({ apiKey, baseURL: "http://localhost:8000", maxRetries: 3 });
  const answer: ChatResponse = await client.chat.send({ agentId: "ag_1", message: "Hi" });
  const fields: [string, string, string, string, number] = [answer.reply, answer.text, answer.conversationId,
                                                             answer.messageId, answer.usage.completionTokens];
  const replayed: boolean = answer.replayed;
  await client.chat.send({ agentId: 1, message: "more", conversationId: answer.conversationId, temperature: 0.5 });

  const stream = client.chat.sendStreaming({ agentId: "1", message: "stream" });
  for await (const event of stream) {
    const piece: string = event.delta;
    if (event.done) {
      const done: ChatDone = event;
      const id: string = done.messageId;
      void id;
    }
    void piece;
  }
  const final = await client.chat.sendStreaming({ agentId: 1, message: "x" }).finalResponse();
  const whole: string = final.text;

  const { agents, nextCursor } = await client.agents.list({ limit: 10 });
  const first: Agent | undefined = agents[0];
  const cursor: string | null = nextCursor;
  for await (const agent of client.agents.list()) {
    const id: number = agent.id;
    void id;
  }
  const agent: Agent = await client.agents.get({ agentId: 1 });
  const page = await client.conversations.list({ agentId: agent.id });
  if (page.hasNextPage()) await page.nextPage();
  const messages = await client.conversations.getMessages({ agentId: 1, conversationId: page.conversations[0].id });
  const role: "user" | "assistant" = messages.messages[0].role;
  const { leads } = await client.leads.list({ agentId: 1 });
  const lead: Lead = leads[0];
  const email: string | null = lead.email;
  const stats = await client.analytics.get({ agentId: 1, start: "2026-01-01", end: new Date() });
  const total: number = stats.totalMessages + stats.totalConversations + stats.totalLeads;

  try {
    await client.agents.get({ agentId: 2 });
  } catch (err) {
    if (err instanceof AgentNotFoundError) {
      const nf: NotFoundError = err;
      const s: number | undefined = nf.status;
      void s;
    }
    if (err instanceof RateLimitExceededError) {
      const wait: number | undefined = err.retryAfter;
      void wait;
    }
    if (err instanceof StreamingError) {
      const cause: string | undefined = err.cause;
      void cause;
    }
    if (err instanceof ChatSparkError) {
      const parts: [string, boolean, string | undefined] = [err.code, err.retryable, err.requestId];
      const fields: Record<string, string[]> = err.fields;
      void parts;
      void fields;
    }
  }
  const cls: typeof ChatSparkError | undefined = ERRORS_BY_CODE["AGENT_NOT_FOUND"];

  // @ts-expect-error: agentId is required
  await client.chat.send({ message: "no agent" });
  // @ts-expect-error: message must be a string
  await client.chat.send({ agentId: 1, message: 42 });
  // @ts-expect-error: leads.list takes its agent in an object
  await client.leads.list(1);
  // @ts-expect-error: a delta has no messageId until it is the done event
  const missing: string = ({} as ChatEvent).messageId;

  void [fields, replayed, whole, first, cursor, role, email, total, cls, missing];
}
