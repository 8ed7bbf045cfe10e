// Streams and retries on agent 2 (its model is the fake provider tests/test_js_client.py scripts:
// these tests run in this order, one model call each as scripted there).
import assert from "node:assert/strict";
import { test } from "node:test";

import * as cs from "../src/index.js";
import { Recorder, client, setting } from "../test-support/helpers.mjs";

const PROVIDER_AGENT = setting("CHATSPARK_PROVIDER_AGENT_ID", "2");
const STREAMED = "alpha beta gamma delta epsilon zeta eta theta";
const scripted = Boolean(process.env.CHATSPARK_PROXY_URL);

test("a stream cut mid-way resumes with Last-Event-ID: every delta once, in order", { skip: !scripted }, async (t) => {
  const recorder = new Recorder();
  const api = client({ baseURL: process.env.CHATSPARK_PROXY_URL, fetch: recorder.fetch });
  const events = [];
  const arrived = [];
  for await (const event of api.chat.sendStreaming({ agentId: PROVIDER_AGENT, message: "stream and survive" })) {
    events.push(event);
    arrived.push(performance.now());
  }
  assert.equal(events.map((e) => e.delta).join(""), STREAMED);
  assert.deepEqual(events.map((e) => e.eventId), events.map((_, n) => n + 1));
  assert.ok(events.at(-1).done && events.slice(0, -1).every((e) => !e.done));
  const [first, second] = recorder.sent;
  assert.equal(recorder.sent.length, 2, "cut once, came back once");
  assert.equal(first.headers["last-event-id"], undefined);
  assert.equal(second.headers["last-event-id"], "2");
  assert.equal(first.headers["idempotency-key"], second.headers["idempotency-key"]);
  // The cut comes a few bytes after event 2: the client is back within its first backoff (<= 312 ms) plus slack.
  const back = second.at - arrived[1];
  t.diagnostic(`event 2 after ${(arrived[1] - first.at).toFixed(0)} ms; asked again ${back.toFixed(0)} ms later`);
  assert.ok(back < 2000, `resumed ${back} ms after the last whole event`);
  const stored = await client().conversations.get({ agentId: PROVIDER_AGENT, conversationId: events.at(-1).conversationId });
  assert.deepEqual(stored.messages.map((m) => m.response), [STREAMED]);
});

test("a busy conversation is retried after its Retry-After, with the same Idempotency-Key", { skip: !scripted }, async () => {
  const api = client();
  const started = await api.chat.send({ agentId: PROVIDER_AGENT, message: "start" });
  const cid = started.conversationId;
  // A slow streamed turn (six pieces, 0.3 s apart) holds the conversation meanwhile.
  const long = api.chat.sendStreaming({ agentId: PROVIDER_AGENT, message: "long one", conversationId: cid });
  const firstDelta = await long.next();
  assert.equal(firstDelta.value.done, false);
  const busy = await client({ maxRetries: 0 }).chat.send({ agentId: PROVIDER_AGENT, message: "now", conversationId: cid })
    .catch((e) => e);
  assert.ok(busy instanceof cs.ConversationBusyError, String(busy));
  assert.deepEqual([busy.retryAfter, busy.retryable, busy.status], [1, true, 409]);

  const recorder = new Recorder();
  const patient = client({ maxRetries: 5, fetch: recorder.fetch });
  const [answer, rest] = await Promise.all([
    patient.chat.send({ agentId: PROVIDER_AGENT, message: "after you", conversationId: cid }),
    long.finalResponse(),
  ]);
  assert.equal(firstDelta.value.delta + rest.text, "one two three four five six");
  assert.equal(answer.conversationId, cid);
  const statuses = recorder.answers.map((a) => a.status);
  assert.ok(statuses.length >= 2 && statuses.at(-1) === 200 && statuses.slice(0, -1).every((s) => s === 409),
            JSON.stringify(statuses));
  for (let n = 1; n < recorder.sent.length; n++) {
    const waited = recorder.sent[n].at - recorder.answers[n - 1].at;
    assert.ok(waited >= 1000, `Retry-After: 1 honoured (waited ${waited.toFixed(0)} ms)`);
  }
  assert.equal(new Set(recorder.sent.map((s) => s.headers["idempotency-key"])).size, 1);
});

test("a stream that cannot be resumed throws a ChatSparkConnectionError after the whole events",
     { skip: !process.env.CHATSPARK_PROXY2_URL }, async () => {
  const api = client({ baseURL: process.env.CHATSPARK_PROXY2_URL, maxRetries: 0 });
  const seen = [];
  const failure = await (async () => {
    for await (const event of api.chat.sendStreaming({ agentId: PROVIDER_AGENT, message: "no retry" })) seen.push(event);
  })().catch((e) => e);
  assert.ok(failure instanceof cs.ChatSparkConnectionError, String(failure));
  assert.equal(seen.map((e) => e.delta).join(""), "alpha beta ");
});

test("a stream whose turn failed before any delta is asked again", { skip: !scripted }, async () => {
  const recorder = new Recorder();
  const events = [];
  for await (const event of client({ maxRetries: 1, fetch: recorder.fetch }).chat.sendStreaming({
    agentId: PROVIDER_AGENT, message: "flaky" })) events.push(event);
  assert.equal(events.map((e) => e.delta).join(""), "second time lucky");
  assert.ok(events.at(-1).done);
  assert.equal(recorder.sent.length, 2);
  assert.equal(recorder.sent[0].headers["idempotency-key"], recorder.sent[1].headers["idempotency-key"]);
  assert.equal(recorder.sent[1].headers["last-event-id"], undefined); // a new turn, from its first event
});

test("a stream that failed after deltas throws its StreamingError, not run again", { skip: !scripted }, async () => {
  const recorder = new Recorder();
  const seen = [];
  const failure = await (async () => {
    for await (const event of client({ maxRetries: 3, fetch: recorder.fetch }).chat.sendStreaming({
      agentId: PROVIDER_AGENT, message: "half" })) seen.push(event);
  })().catch((e) => e);
  assert.ok(failure instanceof cs.StreamingError, String(failure));
  assert.deepEqual([failure.cause, failure.status, failure.code], ["UPSTREAM_ERROR", 500, "STREAMING_ERROR"]);
  assert.ok(seen.length > 0 && seen.every((e) => !e.done));
  assert.equal(recorder.sent.length, 1); // the deltas already shown would repeat
});

test("breaking out of a stream hangs up", async (t) => {
  const api = client();
  // An agent of its own: client.test.mjs (run alongside) counts the turns of CHATSPARK_AGENT_ID.
  const agent = await api.agents.create({ name: "JS client streams", model: "local" });
  t.after(() => api.agents.delete({ agentId: agent.id }));
  const stream = api.chat.sendStreaming({ agentId: agent.id, message: "When are you open?" });
  for await (const event of stream) {
    assert.equal(event.done, false);
    break;
  }
  assert.deepEqual(await stream.next(), { value: undefined, done: true });
});
