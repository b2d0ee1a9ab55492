import type { WireEvent } from './types.js';

/** What `record()` takes: PutEvents' event, with `properties` as an object if you like. */
export interface RecordInput {
  eventType: string;
  itemId?: string;
  eventValue?: number;
  /** Extra interaction fields, camelCase names of your interactions schema's columns. */
  properties?: Record<string, string | number | boolean | null> | string;
  /** Item ids shown to the user (at most 25), in the order shown. */
  impression?: string[];
  /** `recommendationId` of the GetRecommendations answer the item came from. */
  recommendationId?: string;
  /** When it happened (default: now), as a Date or epoch milliseconds. */
  timestamp?: Date | number;
}

// keys Personalize refuses inside `properties` (case-insensitive)
const RESERVED = ['userid', 'sessionid', 'eventtype', 'timestamp', 'recommendationid', 'impression'];

function fail(msg: string): never {
  throw new TypeError(`openpersonalize: ${msg}`);
}

export function checkId(name: string, v: unknown, max = 256): void {
  if (typeof v !== 'string' || v.length < 1 || v.length > max) fail(`${name} must be a string of 1 to ${max} characters`);
}

/** Check an event against PutEvents' limits before it is queued (a 400 would drop its whole
 * batch), and turn it into the wire shape. */
export function toWire(e: RecordInput, eventId: string, nowMs: number): WireEvent {
  if (!e || typeof e !== 'object') fail('record() takes an object');
  checkId('eventType', e.eventType);
  const ms = e.timestamp === undefined ? nowMs : +e.timestamp;
  if (!Number.isFinite(ms)) fail('timestamp must be a Date or epoch milliseconds');
  const w: WireEvent = { eventId, eventType: e.eventType, sentAt: ms / 1000 };
  if (e.itemId !== undefined) checkId('itemId', (w.itemId = e.itemId));
  if (e.eventValue !== undefined) {
    if (typeof e.eventValue !== 'number' || !Number.isFinite(e.eventValue)) fail('eventValue must be a finite number');
    w.eventValue = e.eventValue;
  }
  if (e.properties !== undefined) {
    const p = typeof e.properties === 'string' ? e.properties : JSON.stringify(e.properties);
    let obj: unknown;
    try {
      obj = JSON.parse(p);
    } catch {
      fail('properties must be an object or a JSON object string');
    }
    if (!obj || typeof obj !== 'object' || Array.isArray(obj)) fail('properties must be a JSON object');
    const bad = Object.keys(obj as object).filter((k) => RESERVED.includes(k.toLowerCase()));
    if (bad.length) fail(`properties may not use the reserved keys ${bad.join(', ')}`);
    if (p.length < 1 || p.length > 1024) fail('properties must serialise to 1 to 1024 characters');
    w.properties = p;
  }
  if (e.recommendationId !== undefined) checkId('recommendationId', (w.recommendationId = e.recommendationId), 40);
  if (e.impression !== undefined) {
    if (!Array.isArray(e.impression) || e.impression.length < 1 || e.impression.length > 25) {
      fail('impression must list 1 to 25 item ids');
    }
    e.impression.forEach((id) => checkId('impression item id', id));
    w.impression = e.impression.slice();
  }
  return w;
}
