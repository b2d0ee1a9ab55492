// Compiled (not run) by scripts/test.sh: the published declarations work for require() consumers.
import sdk = require('@openpersonalize/sdk');
import browser = require('@openpersonalize/sdk/browser');

const tracker: sdk.Tracker = sdk.init({ endpoint: 'http://127.0.0.1:8080', trackingId: 't', storage: null });
const stats: sdk.TrackerStats = tracker.stats();
const ranked: Promise<sdk.GetPersonalizedRankingResponse> = new sdk.RuntimeClient({ endpoint: 'http://x' })
  .getPersonalizedRanking({ campaignArn: 'a', userId: 'u', inputList: ['x'] });
tracker.disable();
const again: Promise<void> = tracker.flush({ signal: AbortSignal.timeout(100) });
const same: typeof sdk.init = browser.init;
export = { stats, ranked, again, same };
