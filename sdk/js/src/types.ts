/** Wire shapes of Amazon Personalize's REST APIs (personalize-events 2018-03-22,
 * personalize-runtime 2018-05-22), as openpersonalize serves them. */

/** One entry of PutEvents' `eventList`. `sentAt` is epoch SECONDS (a JSON number). */
export interface WireEvent {
  eventId: string;
  eventType: string;
  sentAt: number;
  eventValue?: number;
  itemId?: string;
  /** A JSON object serialised to a string (at most 1024 characters). */
  properties?: string;
  recommendationId?: string;
  impression?: string[];
}

/** The body of `POST {endpoint}/events`. */
export interface PutEventsRequest {
  trackingId: string;
  userId?: string;
  sessionId: string;
  eventList: WireEvent[];
}

/** A key-value store: `localStorage`, React Native's `AsyncStorage`, or your own. */
export interface StorageAdapter {
  getItem(key: string): string | null | Promise<string | null>;
  setItem(key: string, value: string): void | Promise<void>;
  removeItem(key: string): void | Promise<void>;
}

/** The part of `fetch`'s Response the SDK reads. */
export interface ResponseLike {
  status: number;
  ok: boolean;
  headers: { get(name: string): string | null };
  text(): Promise<string>;
}

export type FetchLike = (url: string, init: {
  method: string;
  headers: Record<string, string>;
  body: string;
  keepalive?: boolean;
  /** Aborted on timeout, on the caller's signal and on `disable()`: pass it on to the request. */
  signal?: AbortSignal;
}) => Promise<ResponseLike>;
