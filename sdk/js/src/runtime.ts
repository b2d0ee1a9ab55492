import type { Tracker } from './tracker.js';
import { DEFAULT_TIMEOUT_MS, postJson, url } from './transport.js';
import type { FetchLike } from './types.js';

export interface RuntimeOptions {
  /** Server base URL (GetRecommendations is `POST {endpoint}/recommendations`). */
  endpoint: string;
  headers?: Record<string, string>;
  fetch?: FetchLike;
  /** A call that has no complete answer after this many ms rejects with a `TimeoutError`
   * (default 10000; 0: no limit). */
  timeoutMs?: number;
}

/** Per call: an `AbortSignal` (the call rejects with an `AbortError`) and a timeout that
 * replaces the client's. */
export interface RequestOptions {
  signal?: AbortSignal;
  timeoutMs?: number;
}

interface Common {
  campaignArn?: string;
  userId?: string;
  filterArn?: string;
  /** Filter parameters: values are strings as Personalize takes them, e.g. `'"Horror","Comedy"'`. */
  filterValues?: Record<string, string>;
  /** Contextual metadata, e.g. `{ DEVICE: 'mobile' }`. */
  context?: Record<string, string>;
  /** Item metadata columns to return per item, e.g. `{ ITEMS: ['TITLE'] }`. */
  metadataColumns?: Record<string, string[]>;
}

export interface GetRecommendationsRequest extends Common {
  recommenderArn?: string;
  itemId?: string;
  /** 1 to 500 (default 25). */
  numResults?: number;
  promotions?: Array<{ name?: string; percentPromotedItems?: number; filterArn?: string;
    filterValues?: Record<string, string> }>;
}

export interface GetPersonalizedRankingRequest extends Common {
  campaignArn: string;
  userId: string;
  inputList: string[];
}

export interface PredictedItem {
  itemId: string;
  score?: number;
  promotionName?: string;
  metadata?: Record<string, string>;
  reason?: string[];
}

export interface GetRecommendationsResponse {
  itemList: PredictedItem[];
  recommendationId: string;
}

export interface GetPersonalizedRankingResponse {
  personalizedRanking: PredictedItem[];
  recommendationId: string;
}

/** personalize-runtime over fetch. Errors reject with a PersonalizeError named as the server
 * names them (ResourceNotFoundException, InvalidInputException, ...), `TimeoutError` after
 * `timeoutMs` without an answer, `AbortError` when the call's signal aborts; nothing is retried. */
export class RuntimeClient {
  constructor(private readonly o: RuntimeOptions) {
    if (typeof o?.endpoint !== 'string' || !o.endpoint) throw new TypeError('openpersonalize: endpoint is required');
  }

  async getRecommendations(req: GetRecommendationsRequest, options?: RequestOptions): Promise<GetRecommendationsResponse> {
    const r = await postJson<Partial<GetRecommendationsResponse>>(url(this.o.endpoint, '/recommendations'), req,
      this.post(options));
    return { itemList: r.itemList ?? [], recommendationId: r.recommendationId ?? '' };
  }

  async getPersonalizedRanking(req: GetPersonalizedRankingRequest, options?: RequestOptions):
    Promise<GetPersonalizedRankingResponse> {
    const r = await postJson<Partial<GetPersonalizedRankingResponse>>(
      url(this.o.endpoint, '/personalize-ranking'), req, this.post(options));
    return { personalizedRanking: r.personalizedRanking ?? [], recommendationId: r.recommendationId ?? '' };
  }

  private post(options: RequestOptions = {}) {
    return { fetch: this.o.fetch, headers: this.o.headers, signals: [options.signal],
      timeoutMs: options.timeoutMs ?? this.o.timeoutMs ?? DEFAULT_TIMEOUT_MS };
  }
}

export interface ShownOptions {
  /** Event type of the impression event (default "impression"; must be one your schema knows). */
  eventType?: string;
  /** How many of the items were actually on screen (default all, at most 25: Personalize's limit). */
  count?: number;
  /** The item the impression belongs to, if any (e.g. the page's item for a related-items list). */
  itemId?: string;
}

/** Record that the user saw `result`'s items: one event with `impression` (the item ids, in
 * order) and `recommendationId`, so clicks can be attributed to this list. Returns its eventId,
 * or undefined when the list is empty. */
export function recordShown(tracker: Tracker, result: GetRecommendationsResponse | GetPersonalizedRankingResponse,
                            options: ShownOptions = {}): string | undefined {
  const items = 'itemList' in result ? result.itemList : result.personalizedRanking;
  const impression = items.slice(0, Math.min(25, options.count ?? 25)).map((i) => i.itemId);
  if (!impression.length) return undefined;
  return tracker.record({
    eventType: options.eventType ?? 'impression',
    impression,
    ...(result.recommendationId ? { recommendationId: result.recommendationId } : {}),
    ...(options.itemId !== undefined ? { itemId: options.itemId } : {}),
  });
}
