// Compiled (not run) by scripts/test.sh: the published declarations work for require() consumers.
import sdk = require('@openpersonalize/sdk');

const tracker: sdk.Tracker = sdk.init({ endpoint: 'http://127.0.0.1:8080', trackingId: 't', storage: null });
const stats: sdk.TrackerStats = tracker.stats();
const ranked: Promise<sdk.GetPersonalizedRankingResponse> = new sdk.RuntimeClient({ endpoint: 'http://x' })
  .getPersonalizedRanking({ campaignArn: 'a', userId: 'u', inputList: ['x'] });
export = { stats, ranked };
