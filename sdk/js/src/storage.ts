import type { StorageAdapter } from './types.js';

/** `localStorage` when it exists and works (not in Node, not in some private modes), else undefined. */
export function defaultStorage(): StorageAdapter | undefined {
  try {
    const s = (globalThis as { localStorage?: Storage }).localStorage;
    if (!s) return undefined;
    const probe = '__opz_probe__';
    s.setItem(probe, '1');
    s.removeItem(probe);
    return s;
  } catch {
    return undefined;
  }
}

/** Run `f` on a value that may or may not be a promise, synchronously when it is not, so a
 * synchronous store (localStorage) is read before the first event is recorded. */
export function then<T>(v: T | Promise<T>, f: (x: T) => void): void | Promise<void> {
  return v && typeof (v as unknown as Promise<T>).then === 'function'
    ? (v as Promise<T>).then(f)
    : f(v as T);
}

export function parse<T>(raw: string | null): T | undefined {
  if (!raw) return undefined;
  try {
    return JSON.parse(raw) as T;
  } catch {
    return undefined;
  }
}

/** Remove `key` from `store`, whatever the store does (sync, async, throwing). */
export function erase(store: StorageAdapter | undefined, key: string): void {
  if (!store) return;
  try {
    const r = store.removeItem(key);
    if (r && typeof r.catch === 'function') r.catch(() => undefined);
  } catch {
    // blocked storage: nothing we can do, and nothing new is written
  }
}
