// The runtime client's wire format, its errors, and recording what was shown.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PersonalizeError, recordShown, RuntimeClient, Tracker } from '../../dist/esm/index.js';
import { scriptedFetch } from './helpers.mjs';

const answer = { itemList: [{ itemId: '50', score: 0.1 }, { itemId: '181', score: 0.05 }], recommendationId: 'RID-1' };

describe('RuntimeClient', () => {
  it('POSTs GetRecommendations to /recommendations and returns the typed answer', async () => {
    const fetch = scriptedFetch({ body: answer });
    const client = new RuntimeClient({ endpoint: 'http://opz.test/', fetch, headers: { 'x-extra': '1' } });
    const req = { campaignArn: 'arn:aws:personalize:us-east-1:000000000000:campaign/c', userId: 'u1', numResults: 2,
      filterArn: 'arn:aws:personalize:us-east-1:000000000000:filter/f', filterValues: { GENRES: '"Horror"' },
      context: { DEVICE: 'mobile' }, metadataColumns: { ITEMS: ['TITLE'] } };
    assert.deepEqual(await client.getRecommendations(req), answer);
    assert.equal(fetch.calls[0].url, 'http://opz.test/recommendations');
    assert.deepEqual(fetch.calls[0].body, req);
    assert.equal(fetch.calls[0].init.headers['x-extra'], '1');
  });

  it('POSTs GetPersonalizedRanking to /personalize-ranking', async () => {
    const ranked = { personalizedRanking: [{ itemId: 'b', score: 0.7 }, { itemId: 'a', score: 0.3 }], recommendationId: 'RID-2' };
    const fetch = scriptedFetch({ body: ranked });
    const client = new RuntimeClient({ endpoint: 'http://opz.test', fetch });
    const got = await client.getPersonalizedRanking({ campaignArn: 'arn:c', userId: 'u', inputList: ['a', 'b'] });
    assert.deepEqual(got, ranked);
    assert.equal(fetch.calls[0].url, 'http://opz.test/personalize-ranking');
  });

  it('rejects with the error the server names (x-amzn-ErrorType, else __type)', async () => {
    const fetch = scriptedFetch(
      { status: 404, headers: { 'x-amzn-ErrorType': 'ResourceNotFoundException' },
        body: { __type: 'ResourceNotFoundException', message: 'campaign arn:x does not exist' } },
      { status: 400, body: { __type: 'com.amazonaws.personalize#InvalidInputException', message: 'numResults' } },
      { status: 502, headers: {}, body: undefined },
      'network');
    const client = new RuntimeClient({ endpoint: 'http://opz.test', fetch });
    const expect = async (name, status, message) => {
      await assert.rejects(client.getRecommendations({ campaignArn: 'arn:x', userId: 'u' }), (e) => {
        assert.ok(e instanceof PersonalizeError);
        assert.equal(e.name, name);
        assert.equal(e.status, status);
        if (message) assert.match(e.message, message);
        return true;
      });
    };
    await expect('ResourceNotFoundException', 404, /does not exist/);
    await expect('InvalidInputException', 400, /numResults/);
    await expect('Http502', 502);
    await expect('NetworkError', 0, /fetch failed/);
  });
});

describe('recordShown', () => {
  it('records the impression (item ids, in order) with the recommendationId', async () => {
    const fetch = scriptedFetch();
    const tracker = new Tracker({ endpoint: 'http://opz.test', trackingId: 'tid', fetch, storage: null });
    const id = recordShown(tracker, answer);
    recordShown(tracker, { personalizedRanking: Array.from({ length: 40 }, (_, i) => ({ itemId: `i${i}` })), recommendationId: 'RID-2' },
      { eventType: 'view', count: 30, itemId: 'page-item' });
    assert.equal(recordShown(tracker, { itemList: [], recommendationId: 'RID-3' }), undefined);
    await tracker.flush();
    const [first, second] = fetch.calls[0].body.eventList;
    assert.equal(first.eventId, id);
    assert.equal(first.eventType, 'impression');
    assert.deepEqual(first.impression, ['50', '181']);
    assert.equal(first.recommendationId, 'RID-1');
    assert.equal(second.impression.length, 25, 'at most 25: Personalize\'s limit');
    assert.equal(second.itemId, 'page-item');
    assert.equal(second.eventType, 'view');
  });
});
