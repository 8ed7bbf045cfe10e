// The JavaScript client of the Chatspark HTTP API (/api/v1): no dependencies, the global fetch
// (Node >= 20, Deno, Bun, browsers). The surface of Chatspark's Node SDK:
//   const client = new ChatSpark({ apiKey, baseURL });
//   await client.chat.send({ agentId: 1, message: "Hi" });
// plus what the Python client in clients/python does: retries of retryable errors honouring
// Retry-After, an automatic Idempotency-Key on chat and create calls (the same on every retry),
// one error class per contract code, streams resumed with Last-Event-ID, lists that page themselves.

export const VERSION = "0.1.0";
const DEFAULT_BASE_URL = "http://localhost:8000";
const API_PREFIX = "/api/v1";

// --- errors ------------------------------------------------------------------------------------

/** Any failure the API reported (or, for ChatSparkConnectionError, the network). */
export class ChatSparkError extends Error {
  static code = "UNKNOWN_ERROR";
  static defaultStatus = undefined;

  constructor(message, { code, status, details, retryable = false, requestId, retryAfter, headers } = {}) {
    super(message);
    this.name = new.target.name;
    this.code = code ?? new.target.code;
    this.status = status ?? new.target.defaultStatus;
    this.details = details ?? {};
    this.retryable = Boolean(retryable);
    this.requestId = requestId ?? undefined;
    this.retryAfter = retryAfter ?? undefined; // seconds, from Retry-After
    this.headers = headers ?? {};
  }

  /** VALIDATION_ERROR: each bad field and its problems. */
  get fields() {
    return { ...(this.details.fields ?? {}) };
  }

  toString() {
    const rid = this.requestId ? `, request id ${this.requestId}` : "";
    return `${this.name}: ${this.code} (${this.status}): ${this.message}${rid}`;
  }
}

/** The request got no answer: refused, reset, timed out, or a stream that could not be resumed. */
export class ChatSparkConnectionError extends ChatSparkError {
  static code = "CONNECTION_ERROR";
}

// Families, so `instanceof AuthenticationError` catches every 401 code.
export class AuthenticationError extends ChatSparkError { static defaultStatus = 401; }
export class PermissionDeniedError extends ChatSparkError { static defaultStatus = 403; }
export class NotFoundError extends ChatSparkError { static defaultStatus = 404; }
export class ConflictError extends ChatSparkError { static defaultStatus = 409; }

export class ApiKeyMissingError extends AuthenticationError { static code = "API_KEY_MISSING"; }
export class ApiKeyInvalidError extends AuthenticationError { static code = "API_KEY_INVALID"; }
export class ApiKeyExpiredError extends AuthenticationError { static code = "API_KEY_EXPIRED"; }
export class ApiKeyRevokedError extends AuthenticationError { static code = "API_KEY_REVOKED"; }
export class ScopeInsufficientError extends PermissionDeniedError { static code = "API_KEY_SCOPE_INSUFFICIENT"; }
export class AgentAccessDeniedError extends PermissionDeniedError { static code = "AGENT_ACCESS_DENIED"; }
export class AgentNotFoundError extends NotFoundError { static code = "AGENT_NOT_FOUND"; }
export class ResourceNotFoundError extends NotFoundError { static code = "RESOURCE_NOT_FOUND"; }
export class ValidationError extends ChatSparkError { static code = "VALIDATION_ERROR"; static defaultStatus = 400; }
export class IdempotencyConflictError extends ConflictError { static code = "IDEMPOTENCY_CONFLICT"; }
export class ConversationBusyError extends ConflictError { static code = "CONVERSATION_BUSY"; }
export class CreditsExhaustedError extends ChatSparkError { static code = "CREDITS_EXHAUSTED"; static defaultStatus = 402; }
export class RateLimitExceededError extends ChatSparkError { static code = "RATE_LIMIT_EXCEEDED"; static defaultStatus = 429; }
export class PayloadTooLargeError extends ChatSparkError { static code = "PAYLOAD_TOO_LARGE"; static defaultStatus = 413; }
export class UnsupportedMediaTypeError extends ChatSparkError { static code = "UNSUPPORTED_MEDIA_TYPE"; static defaultStatus = 415; }
export class MethodNotAllowedError extends ChatSparkError { static code = "METHOD_NOT_ALLOWED"; static defaultStatus = 405; }
export class UpstreamError extends ChatSparkError { static code = "UPSTREAM_ERROR"; static defaultStatus = 502; }
export class UpstreamTimeoutError extends ChatSparkError { static code = "UPSTREAM_TIMEOUT"; static defaultStatus = 504; }
export class ServiceUnavailableError extends ChatSparkError { static code = "SERVICE_UNAVAILABLE"; static defaultStatus = 503; }
export class InternalError extends ChatSparkError { static code = "INTERNAL_ERROR"; static defaultStatus = 500; }
/** A failure after a stream started (an in-stream error event); `cause` is the code a JSON request would have got. */
export class StreamingError extends ChatSparkError {
  static code = "STREAMING_ERROR";
  static defaultStatus = 500;
  get cause() {
    return this.details.cause;
  }
}

/** Every contract code and its class. */
export const ERRORS_BY_CODE = Object.freeze(Object.fromEntries([
  ApiKeyMissingError, ApiKeyInvalidError, ApiKeyExpiredError, ApiKeyRevokedError, ScopeInsufficientError,
  AgentAccessDeniedError, AgentNotFoundError, ResourceNotFoundError, ValidationError, IdempotencyConflictError,
  ConversationBusyError, CreditsExhaustedError, RateLimitExceededError, PayloadTooLargeError,
  UnsupportedMediaTypeError, MethodNotAllowedError, UpstreamError, UpstreamTimeoutError, ServiceUnavailableError,
  StreamingError, InternalError,
].map((cls) => [cls.code, cls])));

const CODE_BY_STATUS = {
  400: "VALIDATION_ERROR", 401: "API_KEY_INVALID", 402: "CREDITS_EXHAUSTED", 403: "API_KEY_SCOPE_INSUFFICIENT",
  404: "RESOURCE_NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "PAYLOAD_TOO_LARGE", 415: "UNSUPPORTED_MEDIA_TYPE",
  429: "RATE_LIMIT_EXCEEDED", 500: "INTERNAL_ERROR", 502: "UPSTREAM_ERROR", 503: "SERVICE_UNAVAILABLE",
  504: "UPSTREAM_TIMEOUT",
};

function parseRetryAfter(value) {
  if (value == null || value.trim() === "") return undefined;
  const seconds = Number(value.trim());
  return Number.isFinite(seconds) && seconds >= 0 ? seconds : undefined;
}

function headersObject(headers) {
  const out = {};
  headers.forEach((value, name) => { out[name] = value; });
  return out;
}

/** The error for an error answer: its envelope's code picks the class. A body that is not the
 * envelope (a proxy's HTML page) still gives an error, by status. */
async function errorFromResponse(response) {
  let body;
  try {
    body = JSON.parse(await response.text());
  } catch {
    body = undefined;
  }
  let error = body && typeof body === "object" ? body.error : undefined;
  const status = response.status;
  if (!error || typeof error !== "object") {
    error = { code: CODE_BY_STATUS[status] ?? "UNKNOWN_ERROR", message: `HTTP ${status}`,
              retryable: [429, 502, 503, 504].includes(status) };
  }
  const code = String(error.code || "UNKNOWN_ERROR");
  const Cls = ERRORS_BY_CODE[code] ?? ChatSparkError;
  return new Cls(String(error.message || code), {
    code, status, details: error.details && typeof error.details === "object" ? error.details : undefined,
    retryable: error.retryable, requestId: response.headers.get("x-request-id") ?? undefined,
    retryAfter: parseRetryAfter(response.headers.get("retry-after")), headers: headersObject(response.headers),
  });
}

function errorFromEvent(error, requestId) {
  const code = String(error.code || "STREAMING_ERROR");
  const Cls = ERRORS_BY_CODE[code] ?? ChatSparkError;
  return new Cls(String(error.message || code), {
    code, status: Cls.defaultStatus ?? 500, retryable: error.retryable, requestId,
    details: error.details && typeof error.details === "object" ? error.details : undefined,
  });
}

const RETRYABLE_CAUSES = new Set(["UPSTREAM_ERROR", "UPSTREAM_TIMEOUT", "SERVICE_UNAVAILABLE"]);

function retryableInStream(error) {
  return error.retryable || (error instanceof StreamingError && RETRYABLE_CAUSES.has(error.cause));
}

// --- the client --------------------------------------------------------------------------------

const env = (name) => globalThis.process?.env?.[name] || undefined;
const inBrowser = () => typeof window !== "undefined" && typeof document !== "undefined";
const sleep = (ms, signal) => new Promise((resolve, reject) => {
  if (signal?.aborted) return reject(signal.reason);
  const timer = setTimeout(() => { signal?.removeEventListener("abort", onAbort); resolve(); }, ms);
  const onAbort = () => { clearTimeout(timer); reject(signal.reason); };
  signal?.addEventListener("abort", onAbort, { once: true });
});

function newIdempotencyKey() {
  return `csjs_${globalThis.crypto.randomUUID().replaceAll("-", "")}`;
}

/** `1`, `"1"` and `"ag_1"` name the same agent (the path accepts both forms). */
function agentPath(agentId) {
  if (agentId === undefined || agentId === null || agentId === "") throw new TypeError("agentId is required");
  return `/agents/${encodeURIComponent(String(agentId))}`;
}

function segment(value, name) {
  if (value === undefined || value === null || value === "") throw new TypeError(`${name} is required`);
  return encodeURIComponent(String(value));
}

function query(params) {
  const found = Object.entries(params).filter(([, v]) => v !== undefined && v !== null);
  if (!found.length) return "";
  return `?${new URLSearchParams(found.map(([k, v]) => [k, v instanceof Date ? v.toISOString().slice(0, 10) : String(v)]))}`;
}

function defined(fields) {
  return Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined));
}

class StreamDropped extends Error {}

/** A 2xx body that is not JSON (a proxy's page): an error of its own, not retried. */
function parseJSON(text, response) {
  try {
    return JSON.parse(text);
  } catch {
    throw new ChatSparkError(`HTTP ${response.status} with a body that is not JSON (${response.headers.get("content-type")})`,
                             { code: "INVALID_RESPONSE", status: response.status,
                               requestId: response.headers.get("x-request-id") ?? undefined });
  }
}

export class ChatSpark {
  /**
   * @param {object} [options] apiKey (else $CHATSPARK_API_KEY), baseURL (else $CHATSPARK_BASE_URL,
   * else http://localhost:8000; ".../api/v1" accepted too), timeout (ms, default 60000), maxRetries
   * (default 2), maxRetryDelay (ms, default 30000), headers, fetch, dangerouslyAllowBrowser.
   */
  constructor(options = {}) {
    const apiKey = options.apiKey ?? env("CHATSPARK_API_KEY");
    if (!apiKey) throw new ChatSparkError("an API key is required: pass { apiKey } or set CHATSPARK_API_KEY", { code: "API_KEY_MISSING" });
    if (inBrowser() && !options.dangerouslyAllowBrowser) {
      throw new ChatSparkError(
        "refusing to run in a browser: the API key would be visible to every visitor. Call Chatspark from " +
        "your server, or pass { dangerouslyAllowBrowser: true } with a key restricted to one agent and the chat scope.",
        { code: "BROWSER_NOT_ALLOWED" });
    }
    const maxRetries = options.maxRetries ?? 2;
    if (!Number.isInteger(maxRetries) || maxRetries < 0) throw new TypeError("maxRetries must be an integer >= 0");
    let base = String(options.baseURL ?? env("CHATSPARK_BASE_URL") ?? DEFAULT_BASE_URL).replace(/\/+$/, "");
    if (base.endsWith(API_PREFIX)) base = base.slice(0, -API_PREFIX.length);
    Object.defineProperty(this, "_apiKey", { value: apiKey, enumerable: false }); // never in a console.log of the client
    this.baseURL = base;
    this.timeout = options.timeout ?? 60_000;
    this.maxRetries = maxRetries;
    this.maxRetryDelay = options.maxRetryDelay ?? 30_000;
    this._headers = { ...(options.headers ?? {}) };
    this._fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.chat = new Chat(this);
    this.agents = new Agents(this);
    this.conversations = new Conversations(this);
    this.feedback = new FeedbackResource(this);
    this.leads = new Leads(this);
    this.analytics = new AnalyticsResource(this);
  }

  _requestHeaders(call, lastEventId) {
    const headers = { authorization: `Bearer ${this._apiKey}`, accept: call.stream ? "text/event-stream" : "application/json",
                      ...this._headers };
    if (!inBrowser()) headers["user-agent"] = `chatspark-client-js/${VERSION}`;
    if (call.body !== undefined) headers["content-type"] = "application/json";
    if (call.idempotencyKey) headers["idempotency-key"] = call.idempotencyKey;
    if (lastEventId !== undefined) headers["last-event-id"] = String(lastEventId);
    return headers;
  }

  /** Milliseconds to wait before attempt `attempt + 1`, or undefined: give up. `error` undefined: a
   * network failure. A Retry-After is honoured as sent unless it is longer than maxRetryDelay (then
   * the error is thrown at once: its retryAfter says when to come back). */
  _retryDelay(attempt, error) {
    if (attempt >= this.maxRetries) return undefined;
    if (error !== undefined) {
      if (!error.retryable) return undefined;
      if (error.retryAfter !== undefined) {
        const ms = error.retryAfter * 1000;
        return ms <= this.maxRetryDelay ? ms : undefined;
      }
    }
    const backoff = Math.min(250 * 2 ** attempt, 8000) * (0.75 + Math.random() / 2);
    return Math.min(backoff, this.maxRetryDelay);
  }

  /** One fetch with the client's timeout (until the answer's headers when `headersOnly`). */
  async _fetchOnce(call, lastEventId, headersOnly) {
    const controller = new AbortController();
    const onAbort = () => controller.abort(call.signal.reason);
    call.signal?.addEventListener("abort", onAbort, { once: true });
    if (call.signal?.aborted) controller.abort(call.signal.reason);
    const timer = setTimeout(() => controller.abort(new ChatSparkConnectionError(`no answer within ${this.timeout} ms`)),
                             this.timeout);
    const done = () => { clearTimeout(timer); call.signal?.removeEventListener("abort", onAbort); };
    try {
      const response = await this._fetch(`${this.baseURL}${API_PREFIX}${call.path}`, {
        method: call.method, headers: this._requestHeaders(call, lastEventId), signal: controller.signal,
        body: call.body === undefined ? undefined : JSON.stringify(call.body),
      });
      if (headersOnly) clearTimeout(timer);
      return { response, controller, done };
    } catch (err) {
      done();
      throw err;
    }
  }

  _isAbort(call, err) {
    return call.signal?.aborted && (err === call.signal.reason || err?.name === "AbortError");
  }

  /** A fetch failure as a ChatSparkConnectionError (an abort by the caller's signal is rethrown as is). */
  _connectionError(call, err, what = "the request failed") {
    if (this._isAbort(call, err)) throw err;
    if (err instanceof ChatSparkError) return err;
    const cause = err?.cause?.code ?? err?.cause?.message ?? err?.message ?? String(err);
    return new ChatSparkConnectionError(`${what}: ${cause}`);
  }

  async _send(call) {
    for (let attempt = 0; ; attempt++) {
      let delay;
      try {
        const { response, done } = await this._fetchOnce(call, undefined, false);
        try {
          if (response.status < 400) {
            const text = response.status === 204 ? "" : await response.text();
            return call.parse(text ? parseJSON(text, response) : undefined, response.headers);
          }
          const error = await errorFromResponse(response);
          delay = this._retryDelay(attempt, error);
          if (delay === undefined) throw error;
        } finally {
          done();
        }
      } catch (err) {
        if (err instanceof ChatSparkError && !(err instanceof ChatSparkConnectionError)) throw err;
        const failure = this._connectionError(call, err);
        // Every call this client makes may be sent again (GETs, DELETEs, and POSTs the server dedupes by key).
        delay = this._retryDelay(attempt, undefined);
        if (delay === undefined) throw failure;
      }
      await sleep(delay, call.signal);
    }
  }

  _page(call) {
    return new Page(this, call);
  }

  /** The stream's events; when the connection drops mid-way, the same request again with
   * Last-Event-ID (the turn is idempotent, so it resumes after the last event seen). */
  async *_stream(call) {
    let attempt = 0;
    let lastEventId;
    let yielded = false;
    for (;;) {
      let decoder;
      let delay;
      let opened;
      try {
        try {
          opened = await this._fetchOnce(call, lastEventId, true);
        } catch (err) {
          throw this._connectionError(call, err);
        }
        const { response } = opened;
        if (response.status >= 400) throw await errorFromResponse(response);
        decoder = new SSEDecoder(response.headers.get("x-request-id") ?? undefined);
        try {
          for await (const line of lines(response.body)) {
            const event = decoder.feed(line);
            if (decoder.lastEventId !== undefined) lastEventId = decoder.lastEventId;
            if (event !== undefined) {
              attempt = 0; // progress: the retry budget is per stall, not per stream
              yielded = true;
              yield event;
            }
            if (decoder.finished) return;
          }
        } catch (err) {
          if (err instanceof ChatSparkError) throw err;
          throw this._connectionError(call, err, "the stream dropped");
        }
        if (decoder.sawDone) return;
        throw new StreamDropped("the stream ended before its last event");
      } catch (err) {
        if (err instanceof StreamDropped || err instanceof ChatSparkConnectionError) {
          if (decoder?.sawDone) return;
          delay = this._retryDelay(attempt, undefined);
          if (delay === undefined) {
            throw new ChatSparkConnectionError(`the stream dropped and could not be resumed: ${err.message}`);
          }
        } else if (err instanceof ChatSparkError) {
          // An error answer before the stream, or a failed turn that sent nothing yet: the turn was
          // not kept, so asking again (same key) runs it again, as for a JSON turn.
          const again = decoder === undefined || (!yielded && retryableInStream(err));
          delay = again ? this._retryDelay(attempt, decoder === undefined ? err : undefined) : undefined;
          if (delay === undefined) throw err;
          if (decoder !== undefined) lastEventId = undefined; // that turn is gone: its retry is a new one
        } else {
          throw err;
        }
      } finally {
        if (opened) {
          opened.done();
          opened.controller.abort(); // hang up (a no-op once the body was read to its end)
        }
      }
      await sleep(delay, call.signal);
      attempt++;
    }
  }
}

/** Lines of a byte stream (LF-separated; a trailing CR is dropped by the decoder). */
async function* lines(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let at;
      while ((at = buffer.indexOf("\n")) >= 0) {
        yield buffer.slice(0, at);
        buffer = buffer.slice(at + 1);
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
  // A last line without its newline is half an event: never dispatched.
}

/** The contract's event stream, line by line: `id:` and `data:` fields, `:` comments (pings), an
 * event dispatched at its blank line. A half-received event is never dispatched. */
class SSEDecoder {
  constructor(requestId) {
    this.requestId = requestId;
    this.lastEventId = undefined;
    this.sawDone = false;
    this.finished = false; // [DONE] seen
    this._id = undefined;
    this._data = [];
  }

  feed(line) {
    if (line.endsWith("\r")) line = line.slice(0, -1);
    if (line === "") return this._dispatch();
    if (line.startsWith(":")) return undefined;
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (name === "data") this._data.push(value);
    else if (name === "id" && /^\d+$/.test(value)) this._id = Number(value);
    return undefined;
  }

  _dispatch() {
    if (!this._data.length) return undefined;
    const data = this._data.join("\n");
    const eventId = this._id;
    this._data = [];
    this._id = undefined;
    if (eventId !== undefined) this.lastEventId = eventId;
    if (data === "[DONE]") {
      this.finished = true;
      return undefined;
    }
    const payload = JSON.parse(data);
    if (payload.error && typeof payload.error === "object") {
      this.finished = true;
      throw errorFromEvent(payload.error, this.requestId);
    }
    const event = { ...payload, delta: payload.delta ?? "", done: Boolean(payload.done), eventId };
    this.sawDone ||= event.done;
    return event;
  }
}

/** A list answer: the JSON as sent (`{ leads: [...], nextCursor }`), plus `items`, `hasNextPage()`,
 * `nextPage()`; `for await` over it walks every item of this page and every page after it. */
class Page {
  constructor(client, call) {
    Object.defineProperty(this, "_client", { value: client, enumerable: false });
    Object.defineProperty(this, "_call", { value: call, enumerable: false });
  }

  static async load(client, call) {
    const page = new Page(client, call);
    Object.assign(page, await client._send({ ...call, parse: (data) => data }));
    Object.defineProperty(page, "items", { value: page[call.key].map(call.item ?? ((x) => x)), enumerable: false });
    return page;
  }

  hasNextPage() {
    return this.nextCursor != null;
  }

  async nextPage() {
    if (this.nextCursor == null) return null;
    return Page.load(this._client, { ...this._call, path: withCursor(this._call.path, this.nextCursor) });
  }

  async *[Symbol.asyncIterator]() {
    for (let page = this; page; page = await page.nextPage()) yield* page.items;
  }
}

function withCursor(path, cursor) {
  const [base, search = ""] = path.split("?");
  const params = new URLSearchParams(search);
  params.set("cursor", cursor);
  return `${base}?${params}`;
}

/** What a list method returns: `await` it for the first page, or `for await` over it for every item. */
class PagePromise {
  constructor(client, call) {
    Object.defineProperty(this, "_client", { value: client, enumerable: false });
    Object.defineProperty(this, "_call", { value: call, enumerable: false });
  }

  then(resolve, reject) {
    this._promise ??= Page.load(this._client, this._call);
    return this._promise.then(resolve, reject);
  }

  catch(reject) {
    return this.then(undefined, reject);
  }

  finally(onFinally) {
    return this.then().finally(onFinally);
  }

  async *[Symbol.asyncIterator]() {
    yield* await this;
  }
}

/** A streamed turn: `for await (const event of stream)` gives the deltas, then one `done` event.
 * Break out of the loop (or call `abort()`) to hang up. */
class ChatStream {
  constructor(client, call) {
    this.idempotencyKey = call.idempotencyKey;
    Object.defineProperty(this, "_events", { value: client._stream(call), enumerable: false });
  }

  [Symbol.asyncIterator]() {
    return this._events;
  }

  next() {
    return this._events.next();
  }

  async abort() {
    await this._events.return(undefined);
  }

  /** The whole answer: reads the stream to its end and gives its text with the done event. */
  async finalResponse() {
    let text = "";
    for await (const event of this) {
      text += event.delta;
      if (event.done) return { ...event, text, reply: text };
    }
    throw new ChatSparkConnectionError("the stream ended without its done event");
  }
}

// --- resources ---------------------------------------------------------------------------------

class Resource {
  constructor(client) {
    Object.defineProperty(this, "_client", { value: client, enumerable: false });
  }

  _get(path, key, signal) {
    return this._client._send({ method: "GET", path, signal, parse: (data) => (key ? data[key] : data) });
  }

  _delete(path, signal) {
    return this._client._send({ method: "DELETE", path, signal, parse: () => undefined });
  }

  _list(path, key, { limit, cursor, signal } = {}) {
    return new PagePromise(this._client, { method: "GET", path: path + query({ limit, cursor }), key, signal });
  }

  _create(path, key, body, idempotencyKey, signal) {
    return this._client._send({ method: "POST", path, body, signal, idempotencyKey: idempotencyKey ?? newIdempotencyKey(),
                                parse: (data) => data[key] });
  }
}

function chatCall({ agentId, message, conversationId, temperature, idempotencyKey, signal }, stream) {
  const body = defined({ message, conversationId, temperature });
  if (stream) body.stream = true;
  return {
    method: "POST", path: `${agentPath(agentId)}/chat`, body, stream, signal,
    idempotencyKey: idempotencyKey ?? newIdempotencyKey(),
    parse: (data, headers) => ({ ...data, replayed: headers.get("idempotent-replayed") === "true" }),
  };
}

class Chat extends Resource {
  /** One turn, answered whole. Omit conversationId to start a conversation. */
  send(params) {
    return this._client._send(chatCall(params, false));
  }

  /** One turn, streamed: delta events, then one done event. Each delta arrives once, even if the
   * connection drops and the stream is resumed. */
  sendStreaming(params) {
    return new ChatStream(this._client, chatCall(params, true));
  }
}

class Agents extends Resource {
  list({ limit, cursor, signal } = {}) {
    return this._list("/agents", "agents", { limit, cursor, signal });
  }

  get({ agentId, signal }) {
    return this._get(agentPath(agentId), "agent", signal);
  }

  /** Fields are the contract's (camelCase): name, botName, botPersonality, model, ... */
  create({ idempotencyKey, signal, ...fields }) {
    return this._create("/agents", "agent", fields, idempotencyKey, signal);
  }

  update({ agentId, signal, ...fields }) {
    // PATCH sets the fields sent: sending it twice gives the same agent, so it may be retried.
    return this._client._send({ method: "PATCH", path: agentPath(agentId), body: fields, signal, parse: (d) => d.agent });
  }

  delete({ agentId, signal }) {
    return this._delete(agentPath(agentId), signal);
  }
}

const conversationPath = (agentId, conversationId) =>
  `${agentPath(agentId)}/conversations/${segment(conversationId, "conversationId")}`;

class Conversations extends Resource {
  list({ agentId, limit, cursor, signal }) {
    return this._list(`${agentPath(agentId)}/conversations`, "conversations", { limit, cursor, signal });
  }

  get({ agentId, conversationId, signal }) {
    return this._get(conversationPath(agentId, conversationId), "conversation", signal);
  }

  getMessages({ agentId, conversationId, limit, cursor, signal }) {
    return this._list(`${conversationPath(agentId, conversationId)}/messages`, "messages", { limit, cursor, signal });
  }

  delete({ agentId, conversationId, signal }) {
    return this._delete(conversationPath(agentId, conversationId), signal);
  }
}

class FeedbackResource extends Resource {
  /** Rate an assistant message: "positive", "negative" or null (clears it). */
  send({ agentId, conversationId, messageId, rating, signal }) {
    return this._client._send({
      method: "POST", body: { rating: rating ?? null }, signal, parse: (data) => data,
      path: `${conversationPath(agentId, conversationId)}/messages/${segment(messageId, "messageId")}/feedback`,
    });
  }
}

class Leads extends Resource {
  list({ agentId, limit, cursor, signal }) {
    return this._list(`${agentPath(agentId)}/leads`, "leads", { limit, cursor, signal });
  }

  create({ agentId, idempotencyKey, signal, ...fields }) {
    return this._create(`${agentPath(agentId)}/leads`, "lead", fields, idempotencyKey, signal);
  }

  delete({ agentId, leadId, signal }) {
    return this._delete(`${agentPath(agentId)}/leads/${segment(leadId, "leadId")}`, signal);
  }
}

class AnalyticsResource extends Resource {
  /** start/end: "YYYY-MM-DD" or a Date (its UTC day). Without both: the current UTC month. */
  get({ agentId, start, end, signal }) {
    return this._get(`${agentPath(agentId)}/analytics${query({ start, end })}`, undefined, signal);
  }
}

export default ChatSpark;
