// What the tests share: the live server they were given (by tests/test_js_client.py, or by hand:
// CHATSPARK_BASE_URL, CHATSPARK_API_KEY, CHATSPARK_AGENT_ID) and a fetch that notes what it sent.
import { ChatSpark } from "../src/index.js";

export function setting(name, fallback) {
  const value = process.env[name] ?? fallback;
  if (value === undefined) throw new Error(`set ${name} (tests/test_js_client.py sets it for you)`);
  return value;
}

export const BASE_URL = setting("CHATSPARK_BASE_URL");
export const API_KEY = setting("CHATSPARK_API_KEY");
/** An agent on the offline "local" model, made for these tests. */
export const AGENT_ID = setting("CHATSPARK_AGENT_ID");

/** A fetch that records each request (time sent, method, url, headers) and each answer (time, status). */
export class Recorder {
  constructor() {
    this.sent = [];
    this.answers = [];
    this.fetch = async (url, init) => {
      this.sent.push({ at: performance.now(), method: init.method, url: String(url), headers: { ...init.headers } });
      const response = await fetch(url, init);
      this.answers.push({ at: performance.now(), status: response.status });
      return response;
    };
  }
}

export function client(options = {}) {
  return new ChatSpark({ apiKey: API_KEY, baseURL: BASE_URL, ...options });
}
