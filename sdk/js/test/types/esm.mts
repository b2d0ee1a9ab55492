// Compiled (not run) by scripts/test.sh: the published declarations work for ESM consumers.
import { init, PersonalizeError, recordShown, RuntimeClient, type GetRecommendationsResponse,
  type StorageAdapter, type TrackerOptions, type WireEvent, type RequestOptions,
  type FlushOptions } from '@openpersonalize/sdk';
import * as browser from '@openpersonalize/sdk/browser';

const storage: StorageAdapter = { getItem: async () => null, setItem: async () => {}, removeItem: async () => {} };
const options: TrackerOptions = {
  endpoint: 'http://127.0.0.1:8080', trackingId: 't', storage,
  onError: (e: PersonalizeError, events: WireEvent[]) => console.log(e.name, e.status, e.retryable, events.length),
};
const tracker = init(options);
const id: string = tracker.record({ eventType: 'click', itemId: 'i', properties: { n: 1 }, timestamp: new Date() });
const client = new RuntimeClient({ endpoint: options.endpoint });
const result: GetRecommendationsResponse = await client.getRecommendations({ campaignArn: 'arn', userId: 'u' });
const first: string | undefined = result.itemList[0]?.itemId;
recordShown(tracker, result, { count: 5 });
// timeouts, AbortSignal, consent
const ctl = new AbortController();
const timed = init({ ...options, timeoutMs: 5000, enabled: false });
await timed.flush({ signal: ctl.signal });
const left: number = await timed.close({ signal: AbortSignal.timeout(1000) });
timed.enable();
timed.disable();
const on: boolean = timed.enabled;
const req: RequestOptions = { signal: ctl.signal, timeoutMs: 2000 };
await new RuntimeClient({ endpoint: 'http://x', timeoutMs: 3000 }).getRecommendations({ userId: 'u' }, req);
await client.getPersonalizedRanking({ campaignArn: 'a', userId: 'u', inputList: ['x'] }, { signal: ctl.signal });
const flushOptions: FlushOptions = { signal: ctl.signal };
// the browser build has the same types
const fromBrowser: typeof init = browser.init;
// @ts-expect-error internals are not exported
import { EventQueue } from '@openpersonalize/sdk';
// @ts-expect-error eventType is required
tracker.record({ itemId: 'i' });
export { first, id, left, on, flushOptions, fromBrowser, EventQueue };
