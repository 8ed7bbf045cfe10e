// Reads one Chatspark chat stream with two popular browser-side SSE clients and prints, as JSON,
// exactly what each dispatched to its caller. Usage: node read-stream.mjs <chat URL> <API key> <message>
// Run by tests/test_sse_clients.py, which makes the assertions.
import { fetchEventSource } from "@microsoft/fetch-event-source";
import { createParser } from "eventsource-parser";

const [url, key, message] = process.argv.slice(2);
const request = {
  method: "POST",
  headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
  body: JSON.stringify({ message, stream: true }),
};

// fetch-event-source is written for browsers: it reaches for window.setTimeout/clearTimeout and
// document's visibility events. Node 20 has the rest (fetch, TextDecoder, streams).
globalThis.window = globalThis;
globalThis.document = { hidden: false, addEventListener() {}, removeEventListener() {} };

async function withFetchEventSource() {
  const messages = [];
  await fetchEventSource(url, {
    ...request,
    openWhenHidden: true,
    onmessage: (msg) => messages.push({ id: msg.id, event: msg.event, data: msg.data }),
    onerror: (err) => {
      throw err; // no silent reconnects: a test must see the failure
    },
  });
  return { messages };
}

async function withEventsourceParser() {
  const events = [];
  const comments = [];
  const parser = createParser({
    onEvent: (event) => events.push({ id: event.id, event: event.event, data: event.data }),
    onComment: (comment) => comments.push(comment),
  });
  const response = await fetch(url, request);
  const decoder = new TextDecoder();
  for await (const chunk of response.body) {
    parser.feed(decoder.decode(chunk, { stream: true }));
  }
  return { status: response.status, events, comments };
}

const result = {
  fetchEventSource: await withFetchEventSource(),
  eventsourceParser: await withEventsourceParser(),
};
process.stdout.write(JSON.stringify(result));
