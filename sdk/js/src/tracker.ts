import { type BackoffOptions, retryDelay } from './backoff.js';
import { PersonalizeError } from './errors.js';
import { uuid } from './ids.js';
import { EventQueue, type Queued } from './queue.js';
import { Session } from './session.js';
import { defaultStorage } from './storage.js';
import { beacon, DEFAULT_TIMEOUT_MS, postJson, url } from './transport.js';
import type { FetchLike, PutEventsRequest, StorageAdapter, WireEvent } from './types.js';
import { checkId, type RecordInput, toWire } from './validate.js';

export type { RecordInput } from './validate.js';

export interface TrackerOptions {
  /** Server base URL, e.g. `https://personalize.example.com` (PutEvents is `POST {endpoint}/events`). */
  endpoint: string;
  /** The event tracker's trackingId (CreateEventTracker). */
  trackingId: string;
  /** Known user at start-up (else call `identify()` later). */
  userId?: string;
  /** Send queued events at least this often, ms (default 5000). */
  flushIntervalMs?: number;
  /** Events per PutEvents call, 1 to 10 (Personalize's limit; default 10). A full batch is sent at once. */
  batchSize?: number;
  /** Most events kept while the server cannot be reached; the oldest are dropped past it (default 500). */
  maxQueueSize?: number;
  /** A session ends after this long without events, ms (default 30 minutes). */
  sessionTimeoutMs?: number;
  /** Where the queue and session live between page loads. Default: localStorage when the
   * platform has one, else memory. Pass React Native's AsyncStorage, or null for memory only. */
  storage?: StorageAdapter | null;
  /** Storage key prefix (default `opz:<trackingId>`). */
  storageKey?: string;
  /** Tries per batch on network errors, throttling and 5xx before it is dropped (default 10). */
  maxAttempts?: number;
  /** Exponential backoff between tries (default 1 s doubling to 60 s, with jitter). */
  backoff?: Partial<BackoffOptions>;
  /** Flush when the page is hidden (visibilitychange / pagehide) (default true in browsers). */
  flushOnHide?: boolean;
  /** On page hide, send with navigator.sendBeacon (text/plain); false: fetch with keepalive (default true). */
  useBeacon?: boolean;
  /** Extra request headers (not sent by sendBeacon). */
  headers?: Record<string, string>;
  fetch?: FetchLike;
  /** A PutEvents call without a complete answer after this many ms is aborted and counts as a
   * failed try (retried with backoff, like a network error); default 10000, 0: no limit. */
  timeoutMs?: number;
  /** Consent: false starts the tracker disabled (nothing stored or sent, and anything an
   * earlier page stored is removed) until `enable()`. Default true. */
  enabled?: boolean;
  /** Called when events are given up: a non-retryable answer (400, 404...), tries exhausted,
   * or the queue overflowing (`name` "QueueOverflow"). */
  onError?: (error: PersonalizeError, events: WireEvent[]) => void;
  /** Clock and randomness, for tests. */
  now?: () => number;
  random?: () => number;
}

export interface TrackerStats {
  /** Events waiting to be sent. */
  queued: number;
  /** Events the server accepted (or the browser took as a beacon). */
  sent: number;
  /** Events dropped because the queue was full. */
  dropped: number;
  /** Events given up after a non-retryable answer or too many tries. */
  failed: number;
}

/** `flush()` and `close()`: a signal that stops them (the request in flight is aborted, its
 * events stay queued for a later try). */
export interface FlushOptions {
  signal?: AbortSignal;
}

interface Doc {
  visibilityState?: string;
  addEventListener?(type: string, f: (e: { type: string }) => void): void;
  removeEventListener?(type: string, f: (e: { type: string }) => void): void;
}

/**
 * Records interactions and sends them with PutEvents: batched (up to 10 per call), every
 * `flushIntervalMs` or as soon as a batch is full, retried with backoff on network errors,
 * throttling (429, ThrottlingException) and 5xx (Retry-After honoured), never on another 4xx. Each event gets an `eventId`, so
 * a retry the server already stored is recognised as a duplicate.
 */
export class Tracker {
  /** Resolves when the queue and session an earlier page saved are loaded (at once for localStorage). */
  readonly ready: Promise<void>;
  private readonly o: Required<Pick<TrackerOptions, 'flushIntervalMs' | 'batchSize' | 'maxAttempts' | 'useBeacon'>>
    & TrackerOptions & { backoff: BackoffOptions; now: () => number };
  private readonly q: EventQueue;
  private readonly s: Session;
  private readonly busy = new Set<string>();
  private timer: ReturnType<typeof setTimeout> | undefined;
  private timerAt = 0;
  private pass: Promise<void> | undefined;
  private attempt = 0;
  private waiting = false;
  private closed = false;
  private sent = 0;
  private failed = 0;
  private detach: (() => void) | undefined;
  private on = true;
  /** Aborted by `disable()`: the request in flight. */
  private kill: AbortController | undefined;

  constructor(options: TrackerOptions) {
    checkId('trackingId', options.trackingId);
    if (typeof options.endpoint !== 'string' || !options.endpoint) throw new TypeError('openpersonalize: endpoint is required');
    const o = this.o = {
      flushIntervalMs: 5000, batchSize: 10, maxAttempts: 10, useBeacon: true, now: () => Date.now(),
      ...options,
      backoff: { baseMs: 1000, maxMs: 60_000, ...options.backoff },
    };
    o.batchSize = Math.max(1, Math.min(10, o.batchSize));
    const store = o.storage === null ? undefined : o.storage ?? defaultStorage();
    const key = o.storageKey ?? `opz:${o.trackingId}`;
    this.q = new EventQueue(o.maxQueueSize ?? 500, store, `${key}:queue`, (gone) =>
      this.report(new PersonalizeError('QueueOverflow', `queue full: dropped ${gone.length} oldest event(s)`, 0), gone));
    this.s = new Session(store, `${key}:session`, o.sessionTimeoutMs ?? 30 * 60_000, o.now, o.userId);
    if (o.userId !== undefined) checkId('userId', o.userId);
    this.kill = newController();
    if (o.enabled === false) {
      this.on = false;
      this.q.clear();
      this.s.forget();
    }
    const loaded = this.on ? [this.s.load(), this.q.load()].filter(Boolean) : [];
    this.ready = (loaded.length ? Promise.all(loaded) : Promise.resolve()).then(() => {
      if (this.q.length) this.schedule(o.flushIntervalMs);
    }, () => undefined);
    this.listen();
  }

  /** Queue one interaction; returns its eventId ('' while disabled: nothing is kept). Throws a
   * TypeError for an event PutEvents would refuse. */
  record(input: RecordInput): string {
    const id = uuid();
    const event = toWire(input, id, this.o.now());
    if (!this.on) return '';
    this.q.push({ ...this.s.touch(), event });
    if (this.q.length >= this.o.batchSize) {
      if (!this.waiting) void this.flush();
    } else {
      this.schedule(this.o.flushIntervalMs);
    }
    return id;
  }

  /** Events recorded from now on carry `userId`. The current session's anonymous events were
   * sent with the same sessionId, which is how Personalize attributes them to this user. */
  identify(userId: string): void {
    checkId('userId', userId);
    this.s.identify(userId);
  }

  /** Sign-out: events are anonymous again, in a new session. Queued events keep their identity. */
  reset(): void {
    this.s.reset();
  }

  /** Consent withdrawn (opt-out): drop every queued event, remove what the tracker stored (queue
   * and session), abort the request in flight, and from now on store and send nothing:
   * `record()` checks its event and returns '' without keeping it. The choice itself is not
   * stored: on the next page, pass `enabled: false` again. */
  disable(): void {
    if (!this.on) return;
    this.on = false;
    this.kill?.abort();
    this.kill = newController();
    this.q.clear();
    this.s.forget();
    this.attempt = 0;
    this.waiting = false;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Consent given: record, store and send again, in a new session. */
  enable(): void {
    if (this.on) return;
    this.on = true;
    this.q.resume();
    this.s.resume();
  }

  /** False between `disable()` and `enable()`. */
  get enabled(): boolean {
    return this.on;
  }

  get sessionId(): string {
    return this.s.current.sessionId;
  }

  get userId(): string | undefined {
    return this.s.current.userId;
  }

  /** Send everything queued now. Resolves (never rejects) when the queue is empty, when a batch
   * must wait for a retry (while backing off after 429/5xx/timeouts, it sends nothing: the
   * retry timer does), or when `signal` aborts (the request in flight is aborted and its events
   * stay queued). */
  flush(options: FlushOptions = {}): Promise<void> {
    if (this.waiting || !this.on) return Promise.resolve();
    if (!this.pass) {
      this.pass = this.run(options.signal).finally(() => {
        this.pass = undefined;
        if (this.q.length && !this.waiting) this.schedule(this.o.flushIntervalMs);
      });
      return this.pass;
    }
    return until(this.pass, options.signal);
  }

  /** Stop timers and page listeners after one last try (ignoring any backoff). Returns how many
   * events are left unsent (kept in storage, if any, for the next start). */
  async close(options: FlushOptions = {}): Promise<number> {
    this.detach?.();
    this.detach = undefined;
    await until(this.pass, options.signal);
    this.waiting = false;
    if (!options.signal?.aborted) await this.flush(options);
    this.closed = true;
    this.waiting = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    return this.q.length;
  }

  stats(): TrackerStats {
    return { queued: this.q.length, sent: this.sent, dropped: this.q.dropped, failed: this.failed };
  }

  private async run(signal?: AbortSignal): Promise<void> {
    await until(this.ready, signal);
    this.clearTimer();
    while (this.on && !signal?.aborted) {
      const batch = this.q.batch(this.o.batchSize, this.busy);
      if (!batch.length || !(await this.send(batch, false, signal))) return;
    }
  }

  /** One PutEvents call. False when the batch stays queued for a later try. */
  private async send(batch: Queued[], keepalive: boolean, signal?: AbortSignal): Promise<boolean> {
    batch.forEach((q) => this.busy.add(q.event.eventId));
    const kill = this.kill;
    try {
      await postJson(url(this.o.endpoint, '/events'), this.body(batch),
        { fetch: this.o.fetch, headers: this.o.headers, keepalive, signals: [kill?.signal, signal],
          timeoutMs: this.o.timeoutMs ?? DEFAULT_TIMEOUT_MS });
      if (!this.on || kill !== this.kill) return false;
      this.q.remove(batch);
      this.sent += batch.length;
      if (!keepalive) this.attempt = 0;
      return true;
    } catch (e) {
      const err = e instanceof PersonalizeError ? e : new PersonalizeError('Error', String(e), 0);
      // disabled meanwhile (the queue is gone), or the caller's signal: not a failed try
      if (!this.on || kill !== this.kill || err.name === 'AbortError') return false;
      if (err.retryable && keepalive) {
        this.schedule(this.o.flushIntervalMs);
        return false;
      }
      if (err.retryable && ++this.attempt < this.o.maxAttempts) {
        this.waiting = true;
        this.schedule(retryDelay(this.attempt, err.retryAfterMs, this.o.backoff, this.o.random), true);
        return false;
      }
      if (!keepalive) this.attempt = 0;
      this.q.remove(batch);
      this.failed += batch.length;
      this.report(err, batch);
      return true;
    } finally {
      batch.forEach((q) => this.busy.delete(q.event.eventId));
    }
  }

  private body(batch: Queued[]): PutEventsRequest {
    const b: PutEventsRequest = { trackingId: this.o.trackingId, sessionId: batch[0]!.sessionId,
      eventList: batch.map((q) => q.event) };
    if (batch[0]!.userId !== undefined) b.userId = batch[0]!.userId;
    return b;
  }

  private report(err: PersonalizeError, events: Queued[]): void {
    try {
      this.o.onError?.(err, events.map((q) => q.event));
    } catch {
      // a throwing callback must not break the queue
    }
  }

  /** Arm the timer to fire within `ms` (an earlier one stands), or, for a retry, exactly then. */
  private schedule(ms: number, retry = false): void {
    if (this.closed || !this.on) return;
    const at = this.o.now() + ms;
    if (this.timer !== undefined) {
      if (!retry && this.timerAt <= at) return;
      clearTimeout(this.timer);
    }
    this.timerAt = at;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (retry) this.waiting = false;
      void this.flush();
    }, ms);
  }

  private clearTimer(): void {
    if (this.timer !== undefined && !this.waiting) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
  }

  /** Page hide: hand every queued batch to the browser, which sends it even after unload. */
  private hide(): void {
    while (this.on) {
      const batch = this.q.batch(this.o.batchSize, this.busy);
      if (!batch.length) return;
      if (this.o.useBeacon && beacon(url(this.o.endpoint, '/events'), this.body(batch))) {
        this.q.remove(batch);
        this.sent += batch.length;
      } else {
        void this.send(batch, true);
      }
    }
  }

  private listen(): void {
    const doc = (globalThis as { document?: Doc }).document;
    const win = globalThis as Doc;
    if (this.o.flushOnHide === false || !doc?.addEventListener || !win.addEventListener) return;
    const onHide = (e: { type: string }) => {
      if (e.type === 'pagehide' || doc.visibilityState === 'hidden') this.hide();
    };
    doc.addEventListener('visibilitychange', onHide);
    win.addEventListener('pagehide', onHide);
    this.detach = () => {
      doc.removeEventListener?.('visibilitychange', onHide);
      win.removeEventListener?.('pagehide', onHide);
    };
  }
}

function newController(): AbortController | undefined {
  const Ctl = (globalThis as { AbortController?: typeof AbortController }).AbortController;
  return Ctl ? new Ctl() : undefined;
}

/** `p`, or sooner: resolved when `signal` aborts. */
function until(p: Promise<unknown> | undefined, signal?: AbortSignal): Promise<void> {
  const done = Promise.resolve(p).then(() => undefined, () => undefined);
  if (!signal) return done;
  if (signal.aborted) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const stop = () => resolve();
    signal.addEventListener('abort', stop);
    void done.then(() => {
      signal.removeEventListener('abort', stop);
      resolve();
    });
  });
}

/** Amplify-style: one tracker for the app. */
export function init(options: TrackerOptions): Tracker {
  return new Tracker(options);
}
