// Test doubles for the unit tests: a scripted fetch, localStorage- and AsyncStorage-like stores.
import { setImmediate as tick } from 'node:timers/promises';

/** A fetch that records each call and answers from a script: a number (status), an object
 * { status, body, headers }, 'network' (the request fails before any answer) or 'hang' (it
 * never answers, whatever its signal says). */
export function scriptedFetch(...script) {
  const calls = [];
  let fallback = 200;
  const fetch = async (url, init) => {
    calls.push({ url, init, body: JSON.parse(init.body), at: Date.now() });
    const step = script.length ? script.shift() : fallback;
    if (step === 'network') throw new TypeError('fetch failed');
    if (step === 'hang') return new Promise(() => {}); // never answers, ignores the signal
    const { status = 200, body, headers = {} } = typeof step === 'number' ? { status: step } : step;
    const text = body === undefined ? (status < 300 ? '' : JSON.stringify({ __type: `Http${status}`, message: 'no' }))
      : JSON.stringify(body);
    return new Response(text || null, { status, headers });
  };
  return Object.assign(fetch, {
    calls,
    push: (...steps) => script.push(...steps),
    always: (s) => { fallback = s; },
    /** eventIds of every call, in order. */
    ids: () => calls.map((c) => c.body.eventList.map((e) => e.eventId)),
  });
}

/** Let pending promise chains (fetch, response.text, the flush loop) run to the end. */
export async function settle(rounds = 20) {
  for (let i = 0; i < rounds; i++) await tick();
}

/** A localStorage: synchronous, strings only, optionally with a quota in characters. */
export class MemoryStorage {
  constructor(quota = Infinity) {
    this.map = new Map();
    this.quota = quota;
  }
  getItem(k) { return this.map.has(k) ? this.map.get(k) : null; }
  setItem(k, v) {
    const used = [...this.map].reduce((n, [key, val]) => n + (key === k ? 0 : val.length), 0);
    if (used + String(v).length > this.quota) {
      const e = new Error('QuotaExceededError'); e.name = 'QuotaExceededError'; throw e;
    }
    this.map.set(k, String(v));
  }
  removeItem(k) { this.map.delete(k); }
  json(k) { return JSON.parse(this.getItem(k)); }
}

/** React Native's AsyncStorage shape: the same, but every call answers later. */
export class AsyncMemoryStorage {
  constructor(initial = {}) { this.map = new Map(Object.entries(initial)); }
  async getItem(k) { await tick(); return this.map.has(k) ? this.map.get(k) : null; }
  async setItem(k, v) { await tick(); this.map.set(k, v); }
  async removeItem(k) { await tick(); this.map.delete(k); }
}

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
