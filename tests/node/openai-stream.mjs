// Streams one chat completion from Chatspark's OpenAI-compatible endpoint with the official `openai`
// package and prints, as JSON, what it handed to its caller: every chunk, and the raw response's
// Chatspark-Conversation-Id. Usage: node openai-stream.mjs <base URL ending in /v1> <API key> <model> <message>
// Run by tests/test_openai_clients.py, which makes the assertions.
import OpenAI from "openai";

const [baseURL, apiKey, model, message] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });
const { data: stream, response } = await client.chat.completions
  .create({
    model,
    messages: [{ role: "user", content: message }],
    stream: true,
    stream_options: { include_usage: true },
  })
  .withResponse();
const chunks = [];
for await (const chunk of stream) chunks.push(chunk);
let error = null;
try {
  await client.chat.completions.create({ model: "agent:999999", messages: [{ role: "user", content: "hi" }] });
} catch (err) {
  error = { name: err.constructor.name, status: err.status, code: err.code ?? null };
}
console.log(JSON.stringify({ conversationId: response.headers.get("chatspark-conversation-id"), chunks, error }));
