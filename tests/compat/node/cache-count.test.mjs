// Cache channels (spec §3.8, §8.6 info=cache) and subscription_count (§3.9, §8.3 info).
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import {
  APPS, CONFIG, MASTER_KEY_B64, Raw, startServer, closeAll, uniq, sdk, connectedClient, subscribe,
  nextEvent, collect, sleep, until,
} from './harness.mjs';

// App 5: subscription_count on. App 6: cache_ttl of 1 s.
const COUNT = { id: '5', key: 'count-key', secret: 's5' };
const SHORT = { id: '6', key: 'short-key', secret: 's6' };

let srv;
let api;
before(async () => {
  srv = await startServer({
    config: `${CONFIG}
[[apps]]
id = "5"
key = "count-key"
secret = "s5"
enable_client_messages = true
enable_subscription_count = true

[[apps]]
id = "6"
key = "short-key"
secret = "s6"
cache_ttl = 1
`,
  });
  api = sdk(srv);
});
after(async () => { await srv.stop(); });
afterEach(closeAll);

const json = async (res) => res.json();

/** Subscribe with pusher-js and resolve with the first cache outcome on the channel. */
async function subscribeCache(client, name) {
  const ch = client.subscribe(name);
  const outcome = new Promise((resolve) => {
    ch.bind_global((event, data) => {
      if (event === 'pusher:subscription_succeeded' || event.startsWith('pusher_internal:')) return;
      resolve({ event, data });
    });
  });
  await nextEvent(ch, 'pusher:subscription_succeeded', 4000);
  const first = await Promise.race([outcome, sleep(2000).then(() => ({ event: 'nothing within 2 s' }))]);
  return { ch, first };
}

// ---------------------------------------------------------------- cache channels

test('pusher-js: cache_miss on an empty cache channel; a late subscriber gets the last triggered event', async () => {
  const name = uniq('cache-');
  const a = await connectedClient(srv);
  const miss = await subscribeCache(a, name);
  assert.equal(miss.first.event, 'pusher:cache_miss');

  const got = nextEvent(miss.ch, 'price');
  await api.trigger(name, 'price', { eur: 1.07 });
  await api.trigger(name, 'price', { eur: 1.08 });
  assert.deepEqual((await got).data, { eur: 1.07 });
  await sleep(100);

  const b = await connectedClient(srv);
  const hit = await subscribeCache(b, name);
  assert.deepEqual(hit.first, { event: 'price', data: { eur: 1.08 } }, 'the last event is replayed');
  assert.ok(!b.messages.some((m) => m.event === 'pusher:cache_miss'));
});

test('raw: cached event frame comes right after subscription_succeeded, data byte-identical', async () => {
  const name = uniq('cache-raw-');
  const data = '{"eur" : 1.08,  "s":"ü"}';
  await api.trigger(name, 'price-updated', data);
  const r = await Raw.connect(srv);
  await r.subscribe(name);
  const idx = r.frames.findIndex((f) => f.json?.event === 'pusher_internal:subscription_succeeded');
  const next = await r.take(() => true, 2000, 'frame after subscription_succeeded');
  assert.equal(r.frames.indexOf(next), idx + 1, 'cached event must directly follow subscription_succeeded');
  assert.deepEqual(next.json, { event: 'price-updated', channel: name, data });
});

test('raw: cache_miss frame shape', async () => {
  const name = uniq('cache-rawmiss-');
  const r = await Raw.connect(srv);
  await r.subscribe(name);
  const f = await r.event('pusher:cache_miss', name);
  assert.equal(f.json.channel, name);
  assert.ok(f.json.data === undefined || f.json.data === '{}' || typeof f.json.data === 'object',
    `unexpected data ${JSON.stringify(f.json.data)}`);
  await r.none((j) => j.channel === name && j.event !== 'pusher:cache_miss', 300);
});

test('non-cache channels get neither cache_miss nor a replay', async () => {
  const name = uniq('nocache-');
  await api.trigger(name, 'ev', 'x');
  const r = await Raw.connect(srv);
  await r.subscribe(name);
  await r.none((j) => j.channel === name, 400);
});

test('private-cache- and presence-cache- replay the cached event to pusher-js', async () => {
  for (const prefix of ['private-cache-', 'presence-cache-']) {
    const name = uniq(prefix);
    const user = { user_id: 'ada', user_info: {} };
    const a = await connectedClient(srv, { user });
    assert.equal((await subscribeCache(a, name)).first.event, 'pusher:cache_miss', prefix);
    await api.trigger(name, 'ev', { n: prefix });
    const b = await connectedClient(srv, { user: { user_id: 'bob' } });
    assert.deepEqual((await subscribeCache(b, name)).first, { event: 'ev', data: { n: prefix } }, prefix);
  }
});

test('private-encrypted-cache-: the replayed event decrypts in pusher-js', async () => {
  const name = uniq('private-encrypted-cache-');
  const enc = sdk(srv, APPS.main, { encryptionMasterKeyBase64: MASTER_KEY_B64 });
  const a = await connectedClient(srv, { masterKey: MASTER_KEY_B64 });
  assert.equal((await subscribeCache(a, name)).first.event, 'pusher:cache_miss');
  await enc.trigger(name, 'secret', { pin: 1234 });
  const b = await connectedClient(srv, { masterKey: MASTER_KEY_B64 });
  assert.deepEqual((await subscribeCache(b, name)).first, { event: 'secret', data: { pin: 1234 } });
});

test('client events are not cached', async () => {
  const name = uniq('private-cache-client-');
  const a = await connectedClient(srv);
  const { ch } = await subscribeCache(a, name);
  const b = await connectedClient(srv);
  const seen = nextEvent((await subscribeCache(b, name)).ch, 'client-typing');
  assert.ok(ch.trigger('client-typing', { who: 'ada' }));
  assert.deepEqual((await seen).data, { who: 'ada' }, 'the client event is relayed');
  const c = await connectedClient(srv);
  assert.equal((await subscribeCache(c, name)).first.event, 'pusher:cache_miss');
});

test('GET /channels/<cache>?info=cache: null when empty, then {event, data, ttl}', async () => {
  const name = uniq('cache-info-');
  assert.deepEqual(await json(await api.get({ path: `/channels/${name}`, params: { info: 'cache' } })),
    { occupied: false, cache: null });
  const data = '{"eur":1.08}';
  await api.trigger(name, 'price-updated', data);
  const body = await json(await api.get({ path: `/channels/${name}`, params: { info: 'cache' } }));
  assert.deepEqual(Object.keys(body).sort(), ['cache', 'occupied']);
  assert.equal(body.occupied, false);
  assert.deepEqual(Object.keys(body.cache).sort(), ['data', 'event', 'ttl']);
  assert.equal(body.cache.event, 'price-updated');
  assert.equal(body.cache.data, data);
  assert.ok(Number.isInteger(body.cache.ttl) && body.cache.ttl > 1790 && body.cache.ttl <= 1800,
    `ttl ${body.cache.ttl}`);

  const r = await Raw.connect(srv);
  await r.subscribe(name);
  const occupied = await json(await api.get({ path: `/channels/${name}`, params: { info: 'subscription_count,cache' } }));
  assert.deepEqual(Object.keys(occupied).sort(), ['cache', 'occupied', 'subscription_count']);
  assert.equal(occupied.occupied, true);
  assert.equal(occupied.subscription_count, 1);
  assert.equal(occupied.cache.data, data);
  assert.equal(occupied.cache.event, 'price-updated');
});

test('cache_ttl = 1: the cached event expires (cache_miss, cache null)', async () => {
  const name = uniq('cache-ttl-');
  const short = sdk(srv, SHORT);
  await short.trigger(name, 'ev', 'x');
  const body = await json(await short.get({ path: `/channels/${name}`, params: { info: 'cache' } }));
  assert.equal(body.cache?.data, 'x');
  assert.ok(body.cache.ttl <= 1, `ttl ${body.cache.ttl}`);
  await sleep(2100);
  assert.equal((await json(await short.get({ path: `/channels/${name}`, params: { info: 'cache' } }))).cache, null);
  const r = await Raw.connect(srv, SHORT.key);
  await r.subscribe(name);
  await r.event('pusher:cache_miss', name);
  await r.none((j) => j.event === 'ev', 300);
});

// ---------------------------------------------------------------- subscription_count

test('pusher-js: pusher:subscription_count and channel.subscriptionCount on two clients', async () => {
  const name = uniq('count-');
  const a = await connectedClient(srv, { app: COUNT });
  const chA = a.subscribe(name);
  const countsA = collect(chA, 'pusher:subscription_count');
  await nextEvent(chA, 'pusher:subscription_succeeded', 4000);
  await until(() => countsA.length >= 1, 'first count');
  assert.deepEqual(countsA.map((c) => c.data), [{ subscription_count: 1 }]);
  assert.equal(chA.subscriptionCount, 1);

  const b = await connectedClient(srv, { app: COUNT });
  const chB = b.subscribe(name);
  const countsB = collect(chB, 'pusher:subscription_count');
  await until(() => countsA.length >= 2 && countsB.length >= 1, 'count 2 on both');
  assert.deepEqual(countsA.map((c) => c.data), [{ subscription_count: 1 }, { subscription_count: 2 }]);
  assert.deepEqual(countsB.map((c) => c.data), [{ subscription_count: 2 }]);
  assert.equal(chA.subscriptionCount, 2);
  assert.equal(chB.subscriptionCount, 2);

  b.unsubscribe(name);
  await until(() => countsA.length >= 3, 'count after unsubscribe');
  assert.deepEqual(countsA[2].data, { subscription_count: 1 });
  assert.equal(chA.subscriptionCount, 1);
});

test('raw subscription_count frame is exact; disconnect also recounts', async () => {
  const name = uniq('count-raw-');
  const a = await Raw.connect(srv, COUNT.key);
  await a.subscribe(name);
  const first = await a.event('pusher_internal:subscription_count', name);
  assert.deepEqual(first.json, {
    event: 'pusher_internal:subscription_count', channel: name, data: '{"subscription_count":1}',
  });
  const b = await Raw.connect(srv, COUNT.key);
  await b.subscribe(name);
  assert.equal((await a.event('pusher_internal:subscription_count', name)).json.data, '{"subscription_count":2}');
  assert.equal((await b.event('pusher_internal:subscription_count', name)).json.data, '{"subscription_count":2}');
  b.disconnect();
  assert.equal((await a.event('pusher_internal:subscription_count', name)).json.data, '{"subscription_count":1}');
});

test('subscription_count: private channels yes, presence channels no', async () => {
  const priv = uniq('private-count-');
  const a = await Raw.connect(srv, COUNT.key);
  await a.subscribe(priv, { secret: COUNT.secret, key: COUNT.key });
  assert.equal((await a.event('pusher_internal:subscription_count', priv)).json.data, '{"subscription_count":1}');

  const pres = uniq('presence-count-');
  const p = await Raw.connect(srv, COUNT.key);
  await p.subscribe(pres, { secret: COUNT.secret, key: COUNT.key, channelData: '{"user_id":"u1"}' });
  const q = await Raw.connect(srv, COUNT.key);
  await q.subscribe(pres, { secret: COUNT.secret, key: COUNT.key, channelData: '{"user_id":"u2"}' });
  await p.none((j) => j.event === 'pusher_internal:subscription_count', 400);
});

test('enable_subscription_count defaults to off: no subscription_count frames', async () => {
  const name = uniq('nocount-');
  const a = await Raw.connect(srv);
  await a.subscribe(name);
  const b = await Raw.connect(srv);
  await b.subscribe(name);
  await a.none((j) => j.event === 'pusher_internal:subscription_count', 400);
});

test('trigger with info via the npm SDK: subscription_count, user_count, cache channel', async () => {
  const count = sdk(srv, COUNT);
  const pub = uniq('info-cache-');
  const pres = uniq('presence-info-');
  for (let i = 0; i < 2; i += 1) await (await Raw.connect(srv, COUNT.key)).subscribe(pub);
  await (await Raw.connect(srv, COUNT.key)).subscribe(pres, { secret: COUNT.secret, key: COUNT.key, channelData: '{"user_id":"u1"}' });
  await (await Raw.connect(srv, COUNT.key)).subscribe(pres, { secret: COUNT.secret, key: COUNT.key, channelData: '{"user_id":"u1"}' });
  const res = await count.trigger([pub, pres], 'ev', 'x', { info: 'user_count,subscription_count' });
  assert.equal(res.status, 200);
  const body = await json(res);
  assert.deepEqual(Object.keys(body), ['channels']);
  assert.deepEqual(Object.keys(body.channels).sort(), [pub, pres].sort());
  assert.deepEqual(body.channels[pub], { subscription_count: 2 });
  assert.equal(body.channels[pres].user_count, 1);

  const only = await json(await count.trigger(pub, 'ev', 'y', { info: 'subscription_count' }));
  assert.deepEqual(only, { channels: { [pub]: { subscription_count: 2 } } });
  const plain = await json(await count.trigger(pub, 'ev', 'z'));
  assert.deepEqual(plain, {});
});
