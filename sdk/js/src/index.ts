export { Tracker, init, type TrackerOptions, type TrackerStats, type RecordInput } from './tracker.js';
export {
  RuntimeClient, recordShown, type RuntimeOptions, type ShownOptions, type GetRecommendationsRequest,
  type GetRecommendationsResponse, type GetPersonalizedRankingRequest, type GetPersonalizedRankingResponse,
  type PredictedItem,
} from './runtime.js';
export { PersonalizeError } from './errors.js';
export { backoffDelay, parseRetryAfter, type BackoffOptions } from './backoff.js';
export { EventQueue } from './queue.js';
export { Session, type Identity } from './session.js';
export type { WireEvent, PutEventsRequest, StorageAdapter, FetchLike, ResponseLike } from './types.js';
