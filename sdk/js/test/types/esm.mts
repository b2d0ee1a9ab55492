// Compiled (not run) by scripts/test.sh: the published declarations work for ESM consumers.
import { init, PersonalizeError, recordShown, RuntimeClient, type GetRecommendationsResponse,
  type StorageAdapter, type TrackerOptions, type WireEvent } from '@openpersonalize/sdk';

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
// @ts-expect-error eventType is required
tracker.record({ itemId: 'i' });
export { first, id };
