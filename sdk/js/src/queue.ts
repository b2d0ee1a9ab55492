import { erase, parse, then } from './storage.js';
import type { StorageAdapter, WireEvent } from './types.js';
import type { Identity } from './session.js';

/** An event waiting to be sent, with the identity it was recorded under. */
export interface Queued extends Identity {
  event: WireEvent;
}

/**
 * The events not yet accepted by the server, oldest first. With a store (localStorage in the
 * browser) every change is written through, so a reload or a crash loses nothing; without
 * one it is memory only. At most `max` events: past that the oldest are dropped and counted.
 */
export class EventQueue {
  private items: Queued[] = [];
  /** Events dropped because the queue was full (or the store refused to grow). */
  dropped = 0;
  /** Consent withdrawn: nothing is kept, in memory or in the store. */
  private off = false;

  constructor(private readonly max: number, private readonly store?: StorageAdapter,
              private readonly key = '', private readonly onDrop?: (events: Queued[]) => void) {}

  get length(): number {
    return this.items.length;
  }

  /** Put back what an earlier page left in the store, ahead of anything recorded since. */
  load(): void | Promise<void> {
    if (!this.store) return;
    return then(this.store.getItem(this.key), (raw) => {
      if (this.off) return;
      const saved = parse<Queued[]>(raw);
      if (!Array.isArray(saved) || saved.length === 0) return;
      const have = new Set(this.items.map((q) => q.event.eventId));
      this.items = saved.filter((q) => q && q.event && !have.has(q.event.eventId)).concat(this.items);
      this.trim();
      this.save();
    });
  }

  /** Consent withdrawn: forget every queued event, here and in the store, and store nothing
   * until `resume()`. */
  clear(): void {
    this.off = true;
    this.items = [];
    erase(this.store, this.key);
  }

  resume(): void {
    this.off = false;
  }

  push(q: Queued): void {
    if (this.off) return;
    this.items.push(q);
    this.trim();
    this.save();
  }

  /** The next PutEvents call: the oldest events not in `busy` that share the first one's
   * identity, at most `size` of them, contiguous, so the server sees them in order. */
  batch(size: number, busy: Set<string>): Queued[] {
    const out: Queued[] = [];
    for (const q of this.items) {
      if (busy.has(q.event.eventId)) {
        if (out.length) break;
        continue;
      }
      if (out.length && (q.sessionId !== out[0]!.sessionId || q.userId !== out[0]!.userId)) break;
      out.push(q);
      if (out.length >= size) break;
    }
    return out;
  }

  remove(events: Queued[]): void {
    const ids = new Set(events.map((q) => q.event.eventId));
    this.items = this.items.filter((q) => !ids.has(q.event.eventId));
    this.save();
  }

  private trim(): void {
    const over = this.items.length - this.max;
    if (over > 0) this.drop(over);
  }

  private drop(n: number): void {
    const gone = this.items.splice(0, n);
    this.dropped += gone.length;
    if (gone.length && this.onDrop) this.onDrop(gone);
  }

  private save(): void {
    if (!this.store || this.off) return;
    for (;;) {
      try {
        const r = this.items.length ? this.store.setItem(this.key, JSON.stringify(this.items))
          : this.store.removeItem(this.key);
        if (r && typeof r.catch === 'function') r.catch(() => undefined);
        return;
      } catch {
        // quota exceeded: give up the oldest half and try again (an empty queue always fits)
        if (!this.items.length) return;
        this.drop(Math.ceil(this.items.length / 2));
      }
    }
  }
}
