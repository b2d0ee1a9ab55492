import { uuid } from './ids.js';
import { erase, parse, then } from './storage.js';
import type { StorageAdapter } from './types.js';

/** What an event is sent as: PutEvents carries one userId and one sessionId per call. */
export interface Identity {
  sessionId: string;
  userId?: string;
}

interface Saved extends Identity {
  /** Time of the last recorded event, epoch ms. */
  last: number;
}

/**
 * The visitor's session: a random sessionId, rotated after `timeoutMs` without events (30
 * minutes, as Amplify and Snowplow do) and on `reset()`. `identify()` keeps the sessionId, so
 * Personalize ties the session's anonymous events to the user ("stitching").
 */
export class Session {
  private s: Saved;
  private touched = false;
  /** Consent withdrawn: the session is not stored. */
  private off = false;

  constructor(private readonly store: StorageAdapter | undefined, private readonly key: string,
              private readonly timeoutMs: number, private readonly now: () => number,
              userId?: string) {
    this.s = { sessionId: uuid(), last: now(), userId };
    if (userId === undefined) delete this.s.userId;
  }

  /** Adopt a session saved by an earlier page (if still fresh and nothing was recorded yet). */
  load(): void | Promise<void> {
    if (!this.store) return;
    return then(this.store.getItem(this.key), (raw) => {
      const saved = parse<Saved>(raw);
      if (!saved || typeof saved.sessionId !== 'string' || this.touched || this.off) return;
      const userId = this.s.userId;
      if (this.now() - saved.last > this.timeoutMs) {
        // expired: a new session, but the user is still signed in
        if (userId === undefined && saved.userId !== undefined) this.s.userId = saved.userId;
      } else if (userId === undefined || userId === saved.userId) {
        this.s = saved;
      }
    });
  }

  /** The identity for an event recorded now: rotates the session when it went idle. */
  touch(): Identity {
    const t = this.now();
    if (t - this.s.last > this.timeoutMs) this.s.sessionId = uuid();
    this.s.last = t;
    this.touched = true;
    this.save();
    return this.current;
  }

  get current(): Identity {
    return this.s.userId === undefined ? { sessionId: this.s.sessionId }
      : { sessionId: this.s.sessionId, userId: this.s.userId };
  }

  /** From now on events carry `userId`. Anonymous -> known keeps the session (stitching); a
   * different user than the one signed in starts a new session. */
  identify(userId: string): void {
    if (this.s.userId !== undefined && this.s.userId !== userId) this.s.sessionId = uuid();
    this.s.userId = userId;
    this.save();
  }

  /** Sign-out: anonymous again, in a new session. */
  reset(): void {
    delete this.s.userId;
    this.s.sessionId = uuid();
    this.s.last = this.now();
    this.save();
  }

  /** Consent withdrawn: remove the stored session, start a new sessionId (so events after
   * `resume()` are not linked to those before), and store nothing until `resume()`. */
  forget(): void {
    this.off = true;
    this.s.sessionId = uuid();
    this.s.last = this.now();
    erase(this.store, this.key);
  }

  resume(): void {
    this.off = false;
  }

  private save(): void {
    if (!this.store || this.off) return;
    try {
      const r = this.store.setItem(this.key, JSON.stringify(this.s));
      if (r && typeof r.catch === 'function') r.catch(() => undefined);
    } catch {
      // storage full or blocked: the session lives in memory for this page
    }
  }
}
