// Every method of the client against a live Chatspark, on an agent of the offline "local" model.
import assert from "node:assert/strict";
import { test } from "node:test";
import { inspect } from "node:util";

import ChatSparkDefault, * as cs from "../src/index.js";
import { AGENT_ID, API_KEY, BASE_URL, Recorder, client } from "../test-support/helpers.mjs";

const { ChatSpark } = cs;

test("the package exports the SDK's names", () => {
  assert.equal(ChatSparkDefault, ChatSpark);
  const api = new ChatSpark({ apiKey: API_KEY, baseURL: `${BASE_URL}/api/v1/` });
  assert.equal(api.baseURL, BASE_URL);
  for (const shown of [JSON.stringify(api), inspect(api, { depth: 10 }), inspect(api.chat, { depth: 10 })]) {
    assert.ok(!shown.includes(API_KEY), "the key must not show when the client is printed");
  }
  assert.throws(() => new ChatSpark({ apiKey: "" , baseURL: BASE_URL }), cs.ChatSparkError);
});

test("it refuses to run in a browser unless told to", () => {
  globalThis.window = {};
  globalThis.document = {};
  try {
    assert.throws(() => new ChatSpark({ apiKey: API_KEY, baseURL: BASE_URL }), /refusing to run in a browser/);
    assert.ok(new ChatSpark({ apiKey: API_KEY, baseURL: BASE_URL, dangerouslyAllowBrowser: true }));
  } finally {
    delete globalThis.window;
    delete globalThis.document;
  }
});

test("a caller's AbortSignal stops a call, and its reason is thrown as is", async () => {
  const controller = new AbortController();
  const reason = new Error("the user left");
  controller.abort(reason);
  await assert.rejects(client().agents.list({ signal: controller.signal }), (err) => err === reason);
  const stream = client().chat.sendStreaming({ agentId: AGENT_ID, message: "hi", signal: controller.signal });
  await assert.rejects(stream.next(), (err) => err === reason);
});

test("one error class per contract code, with its status", { skip: !process.env.CHATSPARK_ERROR_STATUS }, () => {
  const expected = JSON.parse(process.env.CHATSPARK_ERROR_STATUS);
  assert.deepEqual(Object.keys(cs.ERRORS_BY_CODE).sort(), Object.keys(expected).sort());
  for (const [code, Cls] of Object.entries(cs.ERRORS_BY_CODE)) {
    assert.equal(Cls.code, code);
    assert.equal(Cls.defaultStatus, expected[code], code);
    assert.ok(Cls.prototype instanceof cs.ChatSparkError, code);
  }
});

test("chat, a streamed turn, a conversation continued, lists, leads, analytics", async () => {
  const api = client();
  const agent = await api.agents.get({ agentId: AGENT_ID });
  assert.equal(String(agent.id), String(AGENT_ID));
  assert.equal(agent.model, "local");
  for (const form of [Number(AGENT_ID), String(AGENT_ID), `ag_${AGENT_ID}`]) {
    assert.equal((await api.agents.get({ agentId: form })).id, agent.id);
  }
  const agents = await api.agents.list({ limit: 100 });
  assert.ok(agents.agents.some((a) => a.id === agent.id) && "nextCursor" in agents);

  /** @type {import("../index.d.ts").ChatResponse} */
  const first = await api.chat.send({ agentId: `ag_${AGENT_ID}`, message: "When are you open?" });
  assert.ok(first.reply && first.reply === first.text, "reply and text");
  assert.ok(first.conversationId && first.messageId && first.model === "local");
  assert.equal(first.replayed, false);
  assert.ok(first.usage.completionTokens >= 0);

  const events = [];
  for await (const event of api.chat.sendStreaming({ agentId: AGENT_ID, message: "And on weekends?",
                                                     conversationId: first.conversationId })) {
    events.push(event);
  }
  const done = events.at(-1);
  assert.ok(events.length >= 2 && done.done === true && events.slice(0, -1).every((e) => e.done === false));
  assert.equal(done.conversationId, first.conversationId);
  assert.ok(done.messageId && done.model === "local");
  const streamed = events.map((e) => e.delta).join("");
  assert.ok(streamed.length > 0);

  const third = await api.chat.send({ agentId: AGENT_ID, message: "How can I contact you?",
                                      conversationId: first.conversationId });
  assert.equal(third.conversationId, first.conversationId);

  const { conversations } = await api.conversations.list({ agentId: AGENT_ID });
  const summary = conversations.find((c) => c.id === first.conversationId);
  assert.equal(summary.messageCount, 6);
  const conversation = await api.conversations.get({ agentId: AGENT_ID, conversationId: first.conversationId });
  assert.deepEqual(conversation.messages.map((m) => m.query),
                   ["When are you open?", "And on weekends?", "How can I contact you?"]);
  assert.equal(conversation.messages[1].response, streamed);
  const { messages } = await api.conversations.getMessages({ agentId: AGENT_ID, conversationId: first.conversationId });
  assert.deepEqual(messages.map((m) => m.role), ["user", "assistant", "user", "assistant", "user", "assistant"]);
  assert.equal(messages[1].content, first.reply);
  // Lists page themselves: two at a time, every message, in order.
  const walked = [];
  for await (const m of api.conversations.getMessages({ agentId: AGENT_ID, conversationId: first.conversationId, limit: 2 })) {
    walked.push(m.id);
  }
  assert.deepEqual(walked, messages.map((m) => m.id));
  const page = await api.conversations.getMessages({ agentId: AGENT_ID, conversationId: first.conversationId, limit: 4 });
  assert.ok(page.hasNextPage() && page.items.length === 4);
  const second = await page.nextPage();
  assert.equal(second.messages.length, 2);
  assert.equal(await second.nextPage(), null);

  const rated = await api.feedback.send({ agentId: AGENT_ID, conversationId: first.conversationId,
                                          messageId: first.messageId, rating: "positive" });
  assert.deepEqual(rated, { messageId: first.messageId, rating: "positive" });

  /** @type {import("../index.d.ts").Lead} */
  const lead = await api.leads.create({ agentId: AGENT_ID, email: "ada@example.com", companyName: "Example",
                                        conversationId: first.conversationId });
  assert.ok(lead.id.startsWith("lead_") && lead.companyName === "Example");
  const { leads } = await api.leads.list({ agentId: AGENT_ID });
  assert.deepEqual(leads.map((l) => [l.id, l.email]), [[lead.id, "ada@example.com"]]);

  const stats = await api.analytics.get({ agentId: AGENT_ID });
  assert.deepEqual([stats.totalMessages, stats.totalConversations, stats.totalLeads], [6, 1, 1]);
  const today = new Date().toISOString().slice(0, 10);
  const ranged = await api.analytics.get({ agentId: AGENT_ID, start: new Date(), end: today });
  assert.deepEqual(ranged.period, { start: today, end: today });
  assert.equal(ranged.totalMessages, 6);
  const before = await api.analytics.get({ agentId: AGENT_ID, start: "2020-01-01", end: "2020-01-02" });
  assert.equal(before.totalMessages, 0);

  await api.leads.delete({ agentId: AGENT_ID, leadId: lead.id });
  assert.deepEqual((await api.leads.list({ agentId: AGENT_ID })).leads, []);
  await api.conversations.delete({ agentId: AGENT_ID, conversationId: first.conversationId });
  await assert.rejects(api.conversations.get({ agentId: AGENT_ID, conversationId: first.conversationId }),
                       cs.ResourceNotFoundError);
});

test("agents are created, updated and deleted, create with an Idempotency-Key", async () => {
  const recorder = new Recorder();
  const api = client({ fetch: recorder.fetch });
  const made = await api.agents.create({ name: "JS client", model: "local", botPersonality: "You are terse." });
  assert.equal(made.botPersonality, "You are terse.");
  assert.match(recorder.sent[0].headers["idempotency-key"], /^csjs_[0-9a-f]{32}$/);
  const renamed = await api.agents.update({ agentId: made.id, name: "Renamed", welcomeMessage: "Hi" });
  assert.deepEqual([renamed.name, renamed.welcomeMessage], ["Renamed", "Hi"]);
  await api.agents.delete({ agentId: `ag_${made.id}` });
  const missing = await api.agents.get({ agentId: made.id }).catch((e) => e);
  assert.ok(missing instanceof cs.AgentNotFoundError && missing instanceof cs.NotFoundError);
  assert.equal(missing.status, 404);
  assert.equal(missing.code, "AGENT_NOT_FOUND");
  assert.ok(missing.requestId);
  assert.equal(recorder.sent.at(-1).headers["idempotency-key"], undefined); // a GET has none
});

test("a chat call's Idempotency-Key replays the same answer; another body under it conflicts", async () => {
  const recorder = new Recorder();
  const api = client({ fetch: recorder.fetch });
  const first = await api.chat.send({ agentId: AGENT_ID, message: "once only" });
  const key = recorder.sent[0].headers["idempotency-key"];
  assert.match(key, /^csjs_/);
  const again = await api.chat.send({ agentId: AGENT_ID, message: "once only", idempotencyKey: key });
  assert.equal(again.replayed, true);
  assert.equal(again.messageId, first.messageId);
  const conflict = await api.chat.send({ agentId: AGENT_ID, message: "something else", idempotencyKey: key })
    .catch((e) => e);
  assert.ok(conflict instanceof cs.IdempotencyConflictError && conflict instanceof cs.ConflictError);
  assert.deepEqual([conflict.status, conflict.retryable], [409, false]);
  assert.equal(recorder.sent.length, 3); // not retried
});

test("errors are thrown as their code's class", async () => {
  const invalid = await client({ apiKey: "cs_live_" + "x".repeat(40) }).agents.list().catch((e) => e);
  assert.ok(invalid instanceof cs.ApiKeyInvalidError && invalid instanceof cs.AuthenticationError);
  assert.deepEqual([invalid.status, invalid.code, invalid.retryable], [401, "API_KEY_INVALID", false]);
  assert.ok(invalid.requestId && invalid.message);

  const api = client();
  const blank = await api.chat.send({ agentId: AGENT_ID, message: "   " }).catch((e) => e);
  assert.ok(blank instanceof cs.ValidationError);
  assert.equal(blank.status, 400);
  assert.ok("message" in blank.fields, JSON.stringify(blank.details));
  await assert.rejects(api.analytics.get({ agentId: AGENT_ID, start: "2026-02-10", end: "2026-02-01" }), cs.ValidationError);
  await assert.rejects(api.conversations.list({ agentId: AGENT_ID, limit: 1000 }), cs.ValidationError);
  await assert.rejects(api.chat.send({ agentId: AGENT_ID, message: "hi", conversationId: "no-such-conversation" }),
                       cs.ResourceNotFoundError);
  const streamed = api.chat.sendStreaming({ agentId: AGENT_ID, message: "hi", conversationId: "no-such-conversation" });
  await assert.rejects(async () => { for await (const _ of streamed) { /* nothing arrives */ } }, cs.ResourceNotFoundError);
  await assert.rejects(api.agents.get({ agentId: 987654321 }), cs.AgentNotFoundError);
  const refused = await client({ baseURL: "http://127.0.0.1:9", maxRetries: 0 }).agents.list().catch((e) => e);
  assert.ok(refused instanceof cs.ChatSparkConnectionError, String(refused));
});

test("a 429 whose Retry-After is longer than maxRetryDelay is thrown at once, with retryAfter",
     { skip: !process.env.CHATSPARK_LIMITED_KEY }, async () => {
  const recorder = new Recorder();
  const api = client({ apiKey: process.env.CHATSPARK_LIMITED_KEY, maxRetries: 3, maxRetryDelay: 2000, fetch: recorder.fetch });
  await api.agents.get({ agentId: AGENT_ID });
  const started = performance.now();
  const limited = await api.agents.get({ agentId: AGENT_ID }).catch((e) => e);
  assert.ok(performance.now() - started < 1500, "no waiting for a minute");
  assert.ok(limited instanceof cs.RateLimitExceededError, String(limited));
  assert.equal(limited.status, 429);
  assert.ok(limited.retryable && limited.retryAfter > 2, `retryAfter ${limited.retryAfter}`);
  assert.ok(limited.headers["x-ratelimit-limit"]);
  assert.deepEqual(recorder.answers.map((a) => a.status), [200, 429]);
});
