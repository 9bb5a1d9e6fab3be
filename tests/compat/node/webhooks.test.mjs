// Webhooks (spec §9): headers and signature checked by the npm SDK on every request, the
// seven event shapes, unique ids, removal delay and its cancellation, retries, batching,
// filters. Restart durability and dead letters are in webhooks-durable.test.mjs.
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  CONFIG, Raw, startServer, closeAll, uniq, sdk, hmac, connectedClient, subscribe, sleep,
} from './harness.mjs';
import { Sink, webhookToml } from './webhook-sink.mjs';

const HOOK = { id: '5', key: 'hook-key', secret: 'hook-secret' };
const RETRY = { id: '6', key: 'retry-key', secret: 'retry-secret' };
const BATCH = { id: '7', key: 'batch-key', secret: 'batch-secret' };
const FILTER = { id: '8', key: 'filter-key', secret: 'filter-secret' };
const REMOVAL_DELAY_MS = 300;

let srv;
let dataDir;
const sinks = {};

before(async () => {
  for (const [name, app] of Object.entries({ hook: HOOK, retry: RETRY, batch: BATCH, filter: FILTER })) {
    sinks[name] = await new Sink(app).listen();
  }
  dataDir = mkdtempSync(path.join(tmpdir(), 'herald-compat-wh-'));
  srv = await startServer({
    config: `${CONFIG}
[webhooks]
data_dir = "${dataDir}"
removal_delay_ms = ${REMOVAL_DELAY_MS}
retry_for = 300
timeout = 10

[[apps]]
id = "5"
key = "hook-key"
secret = "hook-secret"
enable_client_messages = true
enable_subscription_count = true
${webhookToml(sinks.hook)}
[[apps]]
id = "6"
key = "retry-key"
secret = "retry-secret"
${webhookToml(sinks.retry, { types: ['channel_occupied'] })}
[[apps]]
id = "7"
key = "batch-key"
secret = "batch-secret"
webhook_batching = true
${webhookToml(sinks.batch, { types: ['channel_occupied', 'channel_vacated'] })}
[[apps]]
id = "8"
key = "filter-key"
secret = "filter-secret"
enable_client_messages = true
${webhookToml(sinks.filter, {
    types: ['channel_occupied', 'client_event'],
    extra: 'headers = { Authorization = "Bearer hook-token" }\nfilter = { channel_prefix = "private-" }',
  })}
`,
  });
});
after(async () => {
  await srv.stop();
  for (const s of Object.values(sinks)) await s.close();
  rmSync(dataDir, { recursive: true, force: true });
});
afterEach(async () => {
  await closeAll();
  for (const s of Object.values(sinks)) s.assertAllValid();
});

const raw = (app) => Raw.connect(srv, app.key);
const auth = (app, extra = {}) => ({ secret: app.secret, key: app.key, ...extra });
/** Event without its id (shape comparison); asserts the id is a non-empty string. */
function noId(ev) {
  assert.equal(typeof ev.id, 'string', `event without string id: ${JSON.stringify(ev)}`);
  assert.ok(ev.id.length > 0);
  const { id, ...rest } = ev;
  return rest;
}

// ---------------------------------------------------------------- delivery format

test('request format: POST, Content-Type exactly application/json, X-Pusher-Key, HMAC of the raw body, {time_ms, events}', async () => {
  const s = sinks.hook;
  const name = uniq('wh-fmt-');
  const before = Date.now();
  const r = await raw(HOOK);
  await r.subscribe(name);
  await s.event((e) => e.channel === name && e.name === 'channel_occupied');
  const req = s.requests.find((q) => q.body.events.some((e) => e.channel === name));
  assert.equal(req.method, 'POST');
  assert.equal(req.url, '/hooks');
  assert.equal(req.headers['content-type'], 'application/json');
  assert.equal(req.headers['x-pusher-key'], HOOK.key);
  assert.equal(req.headers['x-pusher-signature'], hmac(HOOK.secret, req.raw));
  assert.ok(req.valid, 'npm SDK isValid()');
  assert.deepEqual(Object.keys(req.body).sort(), ['events', 'time_ms']);
  assert.ok(Number.isInteger(req.body.time_ms), 'time_ms integer');
  assert.ok(req.body.time_ms >= before - 1000 && req.body.time_ms <= Date.now() + 1000, `time_ms ${req.body.time_ms}`);
  assert.equal(req.body.events.length, 1, 'no batching: one event per request');
});

test('channel_occupied then channel_vacated (delayed by removal_delay_ms)', async () => {
  const s = sinks.hook;
  const name = uniq('wh-occ-');
  const r = await raw(HOOK);
  await r.subscribe(name);
  const occ = await s.event((e) => e.channel === name && e.name === 'channel_occupied');
  assert.deepEqual(noId(occ), { name: 'channel_occupied', channel: name });
  const second = await raw(HOOK);
  await second.subscribe(name); // already occupied: no second event
  second.disconnect();
  await sleep(100);
  const left = Date.now();
  r.send({ event: 'pusher:unsubscribe', data: { channel: name } });
  const vac = await s.event((e) => e.channel === name && e.name === 'channel_vacated');
  const took = s.requests.find((q) => q.body.events.includes(vac)).at - left;
  assert.ok(took >= REMOVAL_DELAY_MS - 50, `channel_vacated after ${took} ms, expected >= ${REMOVAL_DELAY_MS}`);
  assert.deepEqual(noId(vac), { name: 'channel_vacated', channel: name });
  await sleep(300);
  assert.deepEqual(s.on(name).map((e) => e.name).filter((n) => n.startsWith('channel_')),
    ['channel_occupied', 'channel_vacated']);
});

test('member_added / member_removed shapes (string user_id) on presence channels', async () => {
  const s = sinks.hook;
  const name = uniq('presence-wh-');
  const a = await raw(HOOK);
  await a.subscribe(name, auth(HOOK, { channelData: '{"user_id":"ada"}' }));
  const b = await raw(HOOK);
  await b.subscribe(name, auth(HOOK, { channelData: '{"user_id":42,"user_info":{"n":1}}' }));
  await s.until(() => s.on(name).filter((e) => e.name === 'member_added').length === 2, 5000, 'two member_added');
  const added = s.on(name).filter((e) => e.name === 'member_added').map(noId)
    .sort((x, y) => x.user_id.localeCompare(y.user_id));
  assert.deepEqual(added, [
    { name: 'member_added', channel: name, user_id: '42' },
    { name: 'member_added', channel: name, user_id: 'ada' },
  ]);
  b.disconnect();
  const removed = await s.event((e) => e.channel === name && e.name === 'member_removed');
  assert.deepEqual(noId(removed), { name: 'member_removed', channel: name, user_id: '42' });
  a.disconnect();
  await s.event((e) => e.channel === name && e.name === 'channel_vacated');
  await sleep(200);
  // Separate requests may arrive in any order: compare as a multiset.
  assert.deepEqual(s.on(name).map((e) => `${e.name}:${e.user_id ?? ''}`).sort(), [
    'channel_occupied:', 'channel_vacated:', 'member_added:42', 'member_added:ada',
    'member_removed:42', 'member_removed:ada',
  ]);
  assert.equal(s.on(name).filter((e) => e.name === 'subscription_count').length, 0, 'no subscription_count for presence');
});

test('same user on two sockets: one member_added, member_removed only after the last socket', async () => {
  const s = sinks.hook;
  const name = uniq('presence-wh2-');
  const a1 = await raw(HOOK);
  await a1.subscribe(name, auth(HOOK, { channelData: '{"user_id":"ada"}' }));
  const a2 = await raw(HOOK);
  await a2.subscribe(name, auth(HOOK, { channelData: '{"user_id":"ada"}' }));
  const keep = await raw(HOOK);
  await keep.subscribe(name, auth(HOOK, { channelData: '{"user_id":"keeper"}' }));
  await s.until(() => s.on(name).filter((e) => e.name === 'member_added').length === 2, 5000, 'member_added x2');
  a1.disconnect();
  await sleep(REMOVAL_DELAY_MS + 500);
  assert.equal(s.on(name).filter((e) => e.name === 'member_removed').length, 0);
  a2.disconnect();
  const removed = await s.event((e) => e.channel === name && e.name === 'member_removed');
  assert.equal(removed.user_id, 'ada');
  assert.deepEqual(s.on(name).filter((e) => e.name === 'member_added').map((e) => e.user_id).sort(), ['ada', 'keeper']);
});

test('leave and come back within removal_delay_ms: neither the removal nor the re-add is sent', async () => {
  const s = sinks.hook;
  const chan = uniq('wh-flap-');
  const pres = uniq('presence-wh-flap-');
  const keep = await raw(HOOK);
  await keep.subscribe(pres, auth(HOOK, { channelData: '{"user_id":"keeper"}' }));
  const a = await raw(HOOK);
  await a.subscribe(chan);
  await a.subscribe(pres, auth(HOOK, { channelData: '{"user_id":"ada"}' }));
  await s.until(() => s.on(chan).length >= 1 && s.on(pres).filter((e) => e.name === 'member_added').length === 2,
    5000, 'initial webhooks');
  await sleep(200);
  const baseline = s.delivered().length;
  a.disconnect(); // vacates chan, removes ada from pres
  await sleep(50);
  const b = await raw(HOOK);
  await b.subscribe(chan);
  await b.subscribe(pres, auth(HOOK, { channelData: '{"user_id":"ada"}' }));
  await sleep(REMOVAL_DELAY_MS + 900);
  const late = s.delivered().slice(baseline)
    .filter((e) => (e.channel === chan || e.channel === pres) && e.name !== 'subscription_count');
  assert.deepEqual(late.map(noId), [], 'flapping within the delay must send nothing');
  // A real departure is still reported afterwards.
  b.disconnect();
  await s.event((e) => e.channel === chan && e.name === 'channel_vacated');
  await s.event((e) => e.channel === pres && e.name === 'member_removed' && e.user_id === 'ada');
});

test('client_event: shape on private (no user_id) and presence (user_id) channels', async () => {
  const s = sinks.hook;
  const priv = uniq('private-wh-ce-');
  const pres = uniq('presence-wh-ce-');
  const a = await raw(HOOK);
  await a.subscribe(priv, auth(HOOK));
  await a.subscribe(pres, auth(HOOK, { channelData: '{"user_id":"ada"}' }));
  a.send({ event: 'client-typing', channel: priv, data: { who: 'Ada' } });
  a.send({ event: 'client-typing', channel: pres, data: '{"who" : "Ada"}' });
  const e1 = await s.event((e) => e.channel === priv && e.name === 'client_event');
  const e2 = await s.event((e) => e.channel === pres && e.name === 'client_event');
  assert.deepEqual(noId(e1), {
    name: 'client_event', channel: priv, event: 'client-typing', data: '{"who":"Ada"}', socket_id: a.socketId,
  });
  assert.deepEqual(noId(e2), {
    name: 'client_event', channel: pres, event: 'client-typing', data: '{"who" : "Ada"}', socket_id: a.socketId, user_id: 'ada',
  });
});

test('cache_miss webhook on subscribing to an empty cache channel; none after a trigger filled it', async () => {
  const s = sinks.hook;
  const name = uniq('cache-wh-');
  const a = await raw(HOOK);
  await a.subscribe(name);
  const miss = await s.event((e) => e.channel === name && e.name === 'cache_miss');
  assert.deepEqual(noId(miss), { name: 'cache_miss', channel: name });
  await sdk(srv, HOOK).trigger(name, 'ev', 'x');
  const b = await raw(HOOK);
  await b.subscribe(name);
  await b.event('ev', name);
  await sleep(400);
  assert.equal(s.on(name).filter((e) => e.name === 'cache_miss').length, 1);
});

test('subscription_count webhook on subscribe and unsubscribe (non-presence)', async () => {
  const s = sinks.hook;
  const name = uniq('wh-count-');
  const a = await raw(HOOK);
  await a.subscribe(name);
  const b = await raw(HOOK);
  await b.subscribe(name);
  await s.until(() => s.on(name).filter((e) => e.name === 'subscription_count').length >= 2, 5000, 'two counts');
  b.send({ event: 'pusher:unsubscribe', data: { channel: name } });
  await s.until(() => s.on(name).filter((e) => e.name === 'subscription_count').length >= 3, 5000, 'third count');
  const counts = s.on(name).filter((e) => e.name === 'subscription_count').map(noId);
  // The first two are separate concurrent requests: compare them in count order.
  assert.deepEqual([...counts.slice(0, 2)].sort((x, y) => x.subscription_count - y.subscription_count), [
    { name: 'subscription_count', channel: name, subscription_count: 1 },
    { name: 'subscription_count', channel: name, subscription_count: 2 },
  ]);
  assert.deepEqual(counts.slice(2), [{ name: 'subscription_count', channel: name, subscription_count: 1 }]);
});

test('#server-to-user channels produce no webhooks', async () => {
  const s = sinks.hook;
  const id = uniq('u').replace(/-/g, '_');
  const c = await connectedClient(srv, { app: HOOK, signinAs: { id } });
  c.signin();
  await sleep(600);
  assert.ok(c.messages.some((m) => m.event === 'pusher_internal:subscription_succeeded' && m.channel === `#server-to-user-${id}`));
  c.disconnect();
  await sleep(REMOVAL_DELAY_MS + 300);
  assert.deepEqual(s.all().filter(({ ev }) => String(ev.channel).startsWith('#')).map(({ ev }) => ev), []);
});

test('pusher-js + npm SDK end to end: every delivered event has a unique id', async () => {
  const s = sinks.hook;
  const name = uniq('presence-wh-js-');
  const c = await connectedClient(srv, { app: HOOK, user: { user_id: 'ada', user_info: {} } });
  const ch = await subscribe(c, name);
  ch.trigger('client-hi', { x: 1 });
  await s.event((e) => e.channel === name && e.name === 'client_event');
  c.disconnect();
  await s.event((e) => e.channel === name && e.name === 'channel_vacated');
  const ids = s.delivered().map((e) => e.id);
  assert.ok(ids.length >= 10, `only ${ids.length} events so far`);
  const dups = s.delivered().filter((e, i) => ids.indexOf(e.id) !== i);
  const deliveries = dups.map((d) => s.requests.filter((q) => q.status === 200 && q.body.events.some((e) => e.id === d.id))
    .map((q) => `${d.name} ${d.id} sent at ${q.at} (time_ms ${q.body.time_ms})`));
  assert.deepEqual(dups, [], `webhook event ids must be unique (no event delivered twice): ${deliveries.flat().join('; ')}`);
});

// ---------------------------------------------------------------- retries

test('non-2xx is retried with backoff (about 1 s, then 2 s) and the retries carry the same id', async () => {
  const s = sinks.retry;
  s.failNext(2, 500);
  const name = uniq('wh-retry-');
  const r = await raw(RETRY);
  await r.subscribe(name);
  const ok = await s.event((e) => e.channel === name, 8000, 'delivery after two failures');
  const attempts = s.requests.filter((q) => q.body.events.some((e) => e.channel === name));
  assert.deepEqual(attempts.map((q) => q.status), [500, 500, 200]);
  const ids = attempts.map((q) => q.body.events.find((e) => e.channel === name).id);
  assert.deepEqual(ids, [ok.id, ok.id, ok.id], 'the same id on every attempt');

  const gap1 = attempts[1].at - attempts[0].at;
  const gap2 = attempts[2].at - attempts[1].at;
  assert.ok(gap1 >= 800 && gap1 <= 2500, `first retry after ${gap1} ms (expected ~1 s)`);
  assert.ok(gap2 >= 1600 && gap2 <= 4000, `second retry after ${gap2} ms (expected ~2 s)`);
  assert.ok(attempts.every((q) => q.valid));
  assert.equal(s.on(name).length, 1, 'delivered once');
});

test('a retried webhook keeps the time_ms of its creation (§9.2, §9.3)', async () => {
  const s = sinks.retry;
  s.failNext(1, 500);
  const name = uniq('wh-retry-time-');
  const r = await raw(RETRY);
  await r.subscribe(name);
  await s.event((e) => e.channel === name, 5000, 'delivery after one failure');
  const attempts = s.requests.filter((q) => q.body.events.some((e) => e.channel === name));
  assert.equal(attempts.length, 2);
  assert.equal(attempts[1].body.time_ms, attempts[0].body.time_ms,
    `time_ms changed from ${attempts[0].body.time_ms} to ${attempts[1].body.time_ms} on the retry`);
});

test('a 4xx answer is retried too (any non-2xx)', async () => {
  const s = sinks.retry;
  s.failNext(1, 404);
  const name = uniq('wh-retry4-');
  const r = await raw(RETRY);
  await r.subscribe(name);
  await s.event((e) => e.channel === name, 5000, 'delivery after a 404');
  const attempts = s.requests.filter((q) => q.body.events.some((e) => e.channel === name));
  assert.deepEqual(attempts.map((q) => q.status), [404, 200]);
});

// ---------------------------------------------------------------- batching, filters, headers

test('webhook_batching: every event delivered exactly once (several per request), signature valid', async () => {
  const s = sinks.batch;
  const names = [];
  for (let round = 0; round < 5; round += 1) {
    const conns = await Promise.all([0, 1, 2, 3].map(() => raw(BATCH)));
    for (let i = 0; i < 5; i += 1) {
      for (const r of conns) {
        const n = uniq('wh-batch-');
        names.push(n);
        r.send({ event: 'pusher:subscribe', data: { channel: n } });
      }
    }
    await s.until(() => names.every((n) => s.on(n).some((e) => e.name === 'channel_occupied')), 5000, 'channel_occupied');
    conns.forEach((r) => r.disconnect());
    await s.until(() => names.every((n) => s.on(n).some((e) => e.name === 'channel_vacated')), 5000, 'channel_vacated');
  }
  await sleep(300);
  const delivered = s.delivered().filter((e) => names.includes(e.channel));
  const ids = delivered.map((e) => e.id);
  const dups = ids.filter((id, i) => ids.indexOf(id) !== i);
  assert.deepEqual(dups, [], `${dups.length} of ${ids.length} events were delivered (answered 200) more than once`);
  for (const n of names) {
    assert.deepEqual(s.on(n).map(noId), [
      { name: 'channel_occupied', channel: n }, { name: 'channel_vacated', channel: n },
    ]);
  }
  const reqs = s.requests.filter((q) => q.body.events.some((e) => names.includes(e.channel)));
  assert.ok(reqs.length < delivered.length, `expected batched requests, got ${reqs.length} requests for ${delivered.length} events`);
});

test('event_types, filter.channel_prefix and custom headers', async () => {
  const s = sinks.filter;
  const pub = uniq('wh-pub-');
  const priv = uniq('private-wh-f-');
  const r = await raw(FILTER);
  await r.subscribe(pub);
  await r.subscribe(priv, auth(FILTER));
  r.send({ event: 'client-x', channel: priv, data: {} });
  await s.event((e) => e.channel === priv && e.name === 'client_event');
  const occ = await s.event((e) => e.channel === priv && e.name === 'channel_occupied');
  const req = s.requests.find((q) => q.body.events.includes(occ));
  assert.equal(req.headers.authorization, 'Bearer hook-token');
  assert.equal(req.headers['x-pusher-key'], FILTER.key);
  r.disconnect();
  await sleep(REMOVAL_DELAY_MS + 500);
  assert.deepEqual(s.on(pub), [], 'public channel filtered out');
  assert.deepEqual(s.on(priv).map((e) => e.name).sort(), ['channel_occupied', 'client_event'],
    'channel_vacated is not in event_types');
});
