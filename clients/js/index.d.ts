// Type declarations of @chatspark/client (hand-written; the package ships plain ESM, no build step).

export declare const VERSION: string;

/** `1`, `"1"` or `"ag_1"`. */
export type AgentId = number | string;

export interface ClientOptions {
  /** Default: `process.env.CHATSPARK_API_KEY`. A server key: never ship it to a browser. */
  apiKey?: string;
  /** Default: `process.env.CHATSPARK_BASE_URL`, else `http://localhost:8000`. `https://…/api/v1` is accepted too. */
  baseURL?: string;
  /** Milliseconds for an answer (for a stream: until its headers). Default 60000. */
  timeout?: number;
  /** Retries of retryable errors (429, 409 CONVERSATION_BUSY, 502/503/504) and network failures. Default 2. */
  maxRetries?: number;
  /** Longest wait before a retry, in ms. A `Retry-After` longer than this is not waited for: the error is thrown. Default 30000. */
  maxRetryDelay?: number;
  /** Extra headers on every request. */
  headers?: Record<string, string>;
  /** A fetch of your own (a proxy agent, a recorder). Default: the global fetch. */
  fetch?: typeof globalThis.fetch;
  /** The constructor refuses to run in a browser (the key would be public) unless this is true. */
  dangerouslyAllowBrowser?: boolean;
}

export interface RequestOptions {
  /** Aborts the request (and any wait before a retry); the abort reason is thrown as is. */
  signal?: AbortSignal;
}

export interface Usage {
  promptTokens: number;
  completionTokens: number;
}

/** A knowledge passage sent to the model with a turn. */
export interface Source {
  trainingId: number;
  source: string;
  title?: string | null;
  url?: string | null;
  score: number;
}

/** One answered turn (`chat.send`). `reply` equals `text`. */
export interface ChatResponse {
  text: string;
  reply: string;
  conversationId: string;
  messageId: string;
  model: string;
  usage: Usage;
  expiresAt?: string;
  sources?: Source[];
  /** The stored answer of an earlier request with the same Idempotency-Key. */
  replayed: boolean;
  [field: string]: unknown;
}

export interface ChatDelta {
  done: false;
  delta: string;
  conversationId: string;
  /** The stream's event id (what `Last-Event-ID` resumes after). */
  eventId?: number;
  [field: string]: unknown;
}

/** The stream's last event: the turn is stored. */
export interface ChatDone {
  done: true;
  delta: string;
  conversationId: string;
  messageId: string;
  model: string;
  usage: Usage;
  expiresAt?: string;
  sources?: Source[];
  eventId?: number;
  [field: string]: unknown;
}

export type ChatEvent = ChatDelta | ChatDone;

export interface ChatParams extends RequestOptions {
  agentId: AgentId;
  message: string;
  /** Omit to start a conversation. */
  conversationId?: string;
  temperature?: number;
  /** Default: a new random key, the same on every retry of this call. */
  idempotencyKey?: string;
}

export declare class ChatStream implements AsyncIterable<ChatEvent> {
  readonly idempotencyKey: string;
  [Symbol.asyncIterator](): AsyncGenerator<ChatEvent, void, undefined>;
  next(): Promise<IteratorResult<ChatEvent, void>>;
  /** Hang up. The turn carries an Idempotency-Key, so the server runs it to its end and stores it
   * (a retry with the same key replays it); only this reader stops. */
  abort(): Promise<void>;
  /** Reads the stream to its end: the done event with the whole `text`/`reply`. */
  finalResponse(): Promise<ChatDone & { text: string; reply: string }>;
}

export interface Agent {
  id: number;
  name: string;
  botName: string;
  botAvatar: string;
  websiteUrl: string;
  status: string;
  chatbotType: string;
  gpt4: boolean;
  createdAt: string;
  updatedAt: string;
  /** On get/create/update (not in lists): */
  botPersonality?: string;
  botNoAnswer?: string;
  welcomeMessage?: string;
  model?: string;
  temperature?: number | null;
  [field: string]: unknown;
}

export interface AgentFields {
  name?: string;
  botName?: string;
  botPersonality?: string;
  botNoAnswer?: string;
  welcomeMessage?: string;
  websiteUrl?: string;
  gpt4?: boolean;
  model?: string;
  temperature?: number;
  [field: string]: unknown;
}

export interface ConversationSummary {
  id: string;
  messageCount: number;
  lastMessageAt: string;
  createdAt: string;
  expiresAt: string;
}

export interface Exchange {
  query: string;
  response: string;
  createdAt: string;
  messageId: string;
  model: string;
  rating: "positive" | "negative" | null;
  sources?: Source[];
}

export interface Conversation {
  id: string;
  createdAt: string;
  expiresAt: string;
  messages: Exchange[];
}

export interface Message {
  id: string;
  role: "user" | "assistant";
  content: string;
  createdAt: string;
  model: string | null;
  rating: "positive" | "negative" | null;
  sources?: Source[];
}

export interface Feedback {
  messageId: string;
  rating: "positive" | "negative" | null;
}

export interface Lead {
  id: string;
  agentId: number;
  name: string | null;
  email: string | null;
  phone: string | null;
  companyName: string | null;
  message: string | null;
  conversationId: string | null;
  createdAt: string;
}

export interface LeadFields {
  name?: string;
  email?: string;
  phone?: string;
  companyName?: string;
  message?: string;
  conversationId?: string;
}

export interface AnalyticsDay {
  date: string;
  messages: number;
  conversations: number;
  leads: number;
}

export interface Analytics {
  totalMessages: number;
  totalConversations: number;
  totalLeads: number;
  period: { start: string; end: string };
  daily?: AnalyticsDay[];
  [field: string]: unknown;
}

/** One page of a list: the JSON as sent (`{ leads: [...], nextCursor }`), plus `items`.
 * `for await` over it walks every item of this page and of every page after it. */
export type Page<K extends string, T> = { [key in K]: T[] } & {
  nextCursor: string | null;
  readonly items: T[];
  hasNextPage(): boolean;
  nextPage(): Promise<Page<K, T> | null>;
  [Symbol.asyncIterator](): AsyncGenerator<T, void, undefined>;
};

/** What a list method returns: `await` it for the first page, or `for await` over it for every item of every page. */
export interface PagePromise<K extends string, T> extends PromiseLike<Page<K, T>>, AsyncIterable<T> {
  catch<R = never>(onrejected?: ((reason: unknown) => R | PromiseLike<R>) | null): Promise<Page<K, T> | R>;
  finally(onfinally?: (() => void) | null): Promise<Page<K, T>>;
}

export interface ListParams extends RequestOptions {
  /** 1–100, default 20. */
  limit?: number;
  cursor?: string;
}

export declare class ChatSpark {
  constructor(options?: ClientOptions);
  readonly baseURL: string;
  readonly timeout: number;
  readonly maxRetries: number;
  readonly maxRetryDelay: number;

  chat: {
    send(params: ChatParams): Promise<ChatResponse>;
    sendStreaming(params: ChatParams): ChatStream;
  };
  agents: {
    list(params?: ListParams): PagePromise<"agents", Agent>;
    get(params: { agentId: AgentId } & RequestOptions): Promise<Agent>;
    create(params: AgentFields & { name: string; idempotencyKey?: string } & RequestOptions): Promise<Agent>;
    update(params: AgentFields & { agentId: AgentId } & RequestOptions): Promise<Agent>;
    delete(params: { agentId: AgentId } & RequestOptions): Promise<void>;
  };
  conversations: {
    list(params: { agentId: AgentId } & ListParams): PagePromise<"conversations", ConversationSummary>;
    get(params: { agentId: AgentId; conversationId: string } & RequestOptions): Promise<Conversation>;
    getMessages(params: { agentId: AgentId; conversationId: string } & ListParams): PagePromise<"messages", Message>;
    delete(params: { agentId: AgentId; conversationId: string } & RequestOptions): Promise<void>;
  };
  feedback: {
    send(params: { agentId: AgentId; conversationId: string; messageId: string;
                   rating: "positive" | "negative" | null } & RequestOptions): Promise<Feedback>;
  };
  leads: {
    list(params: { agentId: AgentId } & ListParams): PagePromise<"leads", Lead>;
    create(params: LeadFields & { agentId: AgentId; idempotencyKey?: string } & RequestOptions): Promise<Lead>;
    delete(params: { agentId: AgentId; leadId: string } & RequestOptions): Promise<void>;
  };
  analytics: {
    /** `start`/`end`: "YYYY-MM-DD" or a Date (its UTC day). Without both: the current UTC month. */
    get(params: { agentId: AgentId; start?: string | Date; end?: string | Date } & RequestOptions): Promise<Analytics>;
  };
}
export default ChatSpark;

// --- errors

export interface ErrorInit {
  code?: string;
  status?: number;
  details?: Record<string, unknown>;
  retryable?: boolean;
  requestId?: string;
  retryAfter?: number;
  headers?: Record<string, string>;
}

/** Any failure the API reported (or, for ChatSparkConnectionError, the network). */
export declare class ChatSparkError extends Error {
  constructor(message: string, init?: ErrorInit);
  static readonly code: string;
  static readonly defaultStatus: number | undefined;
  /** The contract's error code, e.g. "VALIDATION_ERROR". */
  readonly code: string;
  /** The HTTP status (undefined for a connection error). */
  readonly status: number | undefined;
  readonly details: Record<string, unknown>;
  /** Whether asking again may help (the server's `retryable`). */
  readonly retryable: boolean;
  /** The answer's `x-request-id`: quote it when reporting a problem. */
  readonly requestId: string | undefined;
  /** Seconds, from `Retry-After` (429, 409 CONVERSATION_BUSY). */
  readonly retryAfter: number | undefined;
  readonly headers: Record<string, string>;
  /** VALIDATION_ERROR: each bad field and its problems. */
  readonly fields: Record<string, string[]>;
}
export declare class ChatSparkConnectionError extends ChatSparkError {}
export declare class AuthenticationError extends ChatSparkError {}
export declare class PermissionDeniedError extends ChatSparkError {}
export declare class NotFoundError extends ChatSparkError {}
export declare class ConflictError extends ChatSparkError {}
export declare class ApiKeyMissingError extends AuthenticationError {}
export declare class ApiKeyInvalidError extends AuthenticationError {}
export declare class ApiKeyExpiredError extends AuthenticationError {}
export declare class ApiKeyRevokedError extends AuthenticationError {}
export declare class ScopeInsufficientError extends PermissionDeniedError {}
export declare class AgentAccessDeniedError extends PermissionDeniedError {}
export declare class AgentNotFoundError extends NotFoundError {}
export declare class ResourceNotFoundError extends NotFoundError {}
export declare class ValidationError extends ChatSparkError {}
export declare class IdempotencyConflictError extends ConflictError {}
export declare class ConversationBusyError extends ConflictError {}
export declare class CreditsExhaustedError extends ChatSparkError {}
export declare class RateLimitExceededError extends ChatSparkError {}
export declare class PayloadTooLargeError extends ChatSparkError {}
export declare class UnsupportedMediaTypeError extends ChatSparkError {}
export declare class MethodNotAllowedError extends ChatSparkError {}
export declare class UpstreamError extends ChatSparkError {}
export declare class UpstreamTimeoutError extends ChatSparkError {}
export declare class ServiceUnavailableError extends ChatSparkError {}
export declare class InternalError extends ChatSparkError {}
/** A failure after a stream started; `cause` is the code a JSON request would have got. */
export declare class StreamingError extends ChatSparkError {
  readonly cause: string | undefined;
}
/** Every contract code and its class. */
export declare const ERRORS_BY_CODE: Readonly<Record<string, typeof ChatSparkError>>;
