/** Exponential backoff with jitter, and the Retry-After header. */

export interface BackoffOptions {
  /** First delay, in ms (default 1000). */
  baseMs: number;
  /** Largest delay, in ms (default 60000). */
  maxMs: number;
}

/** A server may not ask for more than this (a bad header must not park the queue for days). */
export const MAX_RETRY_AFTER_MS = 10 * 60_000;

/** Delay before retry number `attempt` (1 for the first retry): "equal jitter", a random
 * point in [cap/2, cap] where cap = min(maxMs, baseMs * 2^(attempt-1)). */
export function backoffDelay(attempt: number, o: BackoffOptions, random: () => number = Math.random): number {
  const cap = Math.min(o.maxMs, o.baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(cap / 2 + (random() * cap) / 2);
}

/** Retry-After as delta-seconds or an HTTP date -> ms from `nowMs`; undefined if absent or bad. */
export function parseRetryAfter(value: string | null | undefined, nowMs: number): number | undefined {
  if (value == null || value.trim() === '') return undefined;
  const seconds = Number(value);
  const ms = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(value) - nowMs;
  return Number.isNaN(ms) ? undefined : Math.min(MAX_RETRY_AFTER_MS, Math.max(0, ms));
}

/** How long to wait before the next try: the server's Retry-After when it sent one, else backoff. */
export function retryDelay(attempt: number, retryAfterMs: number | undefined, o: BackoffOptions,
                           random?: () => number): number {
  return retryAfterMs !== undefined ? retryAfterMs : backoffDelay(attempt, o, random);
}
