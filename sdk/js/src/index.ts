export {
  Tracker, init, type TrackerOptions, type TrackerStats, type RecordInput, type FlushOptions,
} from './tracker.js';
export {
  RuntimeClient, recordShown, type RuntimeOptions, type RequestOptions, type ShownOptions,
  type GetRecommendationsRequest, type GetRecommendationsResponse, type GetPersonalizedRankingRequest,
  type GetPersonalizedRankingResponse, type PredictedItem,
} from './runtime.js';
export { PersonalizeError } from './errors.js';
export type { BackoffOptions } from './backoff.js';
export type { WireEvent, PutEventsRequest, StorageAdapter, FetchLike, ResponseLike } from './types.js';
