// HTTP API through the npm `pusher` SDK (spec §8, §10.2 #13-14).
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import {
  APPS, Raw, startServer, closeAll, uniq, sdk, statusOf, signedFetch,
  connectedClient, subscribe, nextEvent, sleep,
} from './harness.mjs';

let srv;
let api;
before(async () => { srv = await startServer(); api = sdk(srv); });
after(async () => { await srv.stop(); });
afterEach(closeAll);

const json = async (res) => JSON.parse(await res.text());

async function presenceMember(name, userId, raw) {
  const r = raw || await Raw.connect(srv);
  await r.subscribe(name, { secret: APPS.main.secret, channelData: JSON.stringify({ user_id: userId }) });
  return r;
}

async function publicMember(name) {
  const r = await Raw.connect(srv);
  await r.subscribe(name, { auth: '' });
  return r;
}

// ------------------------------------------------------------------ trigger

test('trigger to one channel answers 200 {} and delivers to pusher-js', async () => {
  const c = await connectedClient(srv);
  const name = uniq('orders-');
  const ch = await subscribe(c, name);
  const got = nextEvent(ch, 'order-updated');
  const res = await api.trigger(name, 'order-updated', { id: 7 });
  assert.equal(res.status, 200);
  assert.deepEqual(await json(res), {});
  assert.deepEqual((await got).data, { id: 7 });
});

test('trigger to several channels delivers once on each', async () => {
  const names = [uniq('multi-a-'), uniq('multi-b-'), uniq('private-multi-')];
  const subs = [await publicMember(names[0]), await publicMember(names[1]), await Raw.connect(srv)];
  await subs[2].subscribe(names[2], { secret: APPS.main.secret });
  const both = await Raw.connect(srv);
  await both.subscribe(names[0], { auth: '' });
  await both.subscribe(names[1], { auth: '' });
  await api.trigger(names, 'fanout', 'payload');
  for (let i = 0; i < 3; i += 1) assert.equal((await subs[i].event('fanout', names[i])).json.data, 'payload');
  await both.event('fanout', names[0]);
  await both.event('fanout', names[1]);
  await both.none((j) => j.event === 'fanout', 300);
});

test('trigger with socket_id excludes only that socket', async () => {
  const name = uniq('excl-');
  const a = await publicMember(name);
  const b = await publicMember(name);
  await api.trigger(name, 'ev', 'x', { socket_id: a.socketId });
  await b.event('ev', name);
  await a.none((j) => j.event === 'ev', 400);
  // The exclusion applies to that request only.
  await api.trigger(name, 'ev2', 'y');
  await a.event('ev2', name);
});

test('trigger data string is relayed byte for byte (odd spacing, unicode, escapes)', async () => {
  const name = uniq('bytes-');
  const r = await publicMember(name);
  const data = '{ "a" :1,  "u":"héllo ☃ 😀", "esc":"\\u00e9\\n", "n": 1.50 }';
  await api.trigger(name, 'raw', data);
  const f = await r.event('raw', name);
  assert.equal(f.json.data, data);
  const nonJson = 'just text, not JSON';
  await api.trigger(name, 'raw2', nonJson);
  assert.equal((await r.event('raw2', name)).json.data, nonJson);
});

test('trigger with info returns user_count for presence and subscription_count for others', async () => {
  const pres = uniq('presence-info-');
  const pub = uniq('info-');
  await presenceMember(pres, 'u1');
  await presenceMember(pres, 'u2');
  await presenceMember(pres, 'u2');
  await publicMember(pub);
  await publicMember(pub);
  await publicMember(pub);
  const res = await api.trigger([pres, pub], 'ev', 'x', { info: 'user_count,subscription_count' });
  const body = await json(res);
  assert.equal(body.channels[pres].user_count, 2);
  assert.equal(body.channels[pub].subscription_count, 3);
  assert.ok(!('user_count' in body.channels[pub]), 'user_count only applies to presence');
});

test('triggerBatch delivers every event in order and answers {}', async () => {
  const a = uniq('batch-a-');
  const b = uniq('batch-b-');
  const r = await publicMember(a);
  await r.subscribe(b, { auth: '' });
  const res = await api.triggerBatch([
    { channel: a, name: 'one', data: { n: 1 } },
    { channel: b, name: 'two', data: 'plain' },
    { channel: a, name: 'three', data: { n: 3 } },
  ]);
  assert.deepEqual(await json(res), {});
  const seq = [await r.event('one', a), await r.event('two', b), await r.event('three', a)];
  assert.deepEqual(seq.map((f) => f.json.data), ['{"n":1}', 'plain', '{"n":3}']);
  const order = r.frames.filter((f) => ['one', 'two', 'three'].includes(f.json?.event)).map((f) => f.json.event);
  assert.deepEqual(order, ['one', 'two', 'three']);
});

test('triggerBatch with info returns a batch array aligned with the request', async () => {
  const pres = uniq('presence-binfo-');
  const pub = uniq('binfo-');
  await presenceMember(pres, 'x');
  await publicMember(pub);
  const res = await api.triggerBatch([
    { channel: pub, name: 'a', data: '1' },
    { channel: pres, name: 'b', data: '2', info: 'user_count' },
  ]);
  const body = await json(res);
  assert.equal(body.batch.length, 2);
  assert.equal(body.batch[1].user_count, 1);
});

test('triggerBatch with more than 10 events is rejected with 400 and delivers nothing', async () => {
  const name = uniq('batch-big-');
  const r = await publicMember(name);
  const batch = Array.from({ length: 11 }, (_, i) => ({ channel: name, name: 'e', data: String(i) }));
  assert.equal(await statusOf(api.triggerBatch(batch)), 400);
  await r.none((j) => j.event === 'e', 300);
});

test('event data of exactly 10240 bytes is accepted, 10241 bytes is 413', async () => {
  const name = uniq('size-');
  const r = await publicMember(name);
  await api.trigger(name, 'ok', 'x'.repeat(10240));
  assert.equal((await r.event('ok', name)).json.data.length, 10240);
  assert.equal(await statusOf(api.trigger(name, 'big', 'x'.repeat(10241))), 413);
  await r.none((j) => j.event === 'big', 300);
});

test('a batch containing one oversized event is 413', async () => {
  const name = uniq('size-b-');
  assert.equal(await statusOf(api.triggerBatch([
    { channel: name, name: 'a', data: 'small' },
    { channel: name, name: 'b', data: 'y'.repeat(11000) },
  ])), 413);
});

// ------------------------------------------------------------------ channel queries

test('GET /channels lists occupied channels only, with filter_by_prefix', async () => {
  const tag = uniq('lst');
  const pubA = `${tag}-a`;
  const pubB = `${tag}-b`;
  const pres = `presence-${tag}`;
  await publicMember(pubA);
  const leaver = await publicMember(pubB);
  await presenceMember(pres, 'u1');
  leaver.disconnect();
  await sleep(300);
  const all = await json(await api.get({ path: '/channels' }));
  assert.deepEqual(all.channels[pubA], {});
  assert.deepEqual(all.channels[pres], {});
  assert.ok(!(pubB in all.channels), 'vacated channels are not listed');
  const filtered = await json(await api.get({ path: '/channels', params: { filter_by_prefix: tag } }));
  assert.deepEqual(filtered, { channels: { [pubA]: {} } });
});

test('GET /channels info=user_count with a presence- prefix returns distinct user counts', async () => {
  const pres = uniq('presence-uc-');
  await presenceMember(pres, 'u1');
  await presenceMember(pres, 'u2');
  await presenceMember(pres, 'u1');
  const body = await json(await api.get({
    path: '/channels', params: { filter_by_prefix: pres, info: 'user_count' },
  }));
  assert.deepEqual(body, { channels: { [pres]: { user_count: 2 } } });
});

test('GET /channels info=user_count without a presence- prefix is 400', async () => {
  assert.equal(await statusOf(api.get({ path: '/channels', params: { info: 'user_count' } })), 400);
  assert.equal(await statusOf(api.get({
    path: '/channels', params: { info: 'user_count', filter_by_prefix: 'private-' },
  })), 400);
});

test('GET /channels/<public> with subscription_count counts sockets', async () => {
  const name = uniq('one-');
  await publicMember(name);
  await publicMember(name);
  const body = await json(await api.get({ path: `/channels/${name}`, params: { info: 'subscription_count' } }));
  assert.deepEqual(body, { occupied: true, subscription_count: 2 });
  const plain = await json(await api.get({ path: `/channels/${name}` }));
  assert.equal(plain.occupied, true);
});

test('GET /channels/<presence> with user_count counts users, not sockets', async () => {
  const name = uniq('presence-one-');
  await presenceMember(name, 'u1');
  await presenceMember(name, 'u1');
  await presenceMember(name, 'u2');
  const body = await json(await api.get({ path: `/channels/${name}`, params: { info: 'user_count' } }));
  assert.equal(body.occupied, true);
  assert.equal(body.user_count, 2);
});

test('GET /channels/<unoccupied> answers occupied false', async () => {
  const body = await json(await api.get({ path: `/channels/${uniq('empty-')}` }));
  assert.equal(body.occupied, false);
});

test('GET /channels/<public>?info=user_count is 400', async () => {
  const name = uniq('nouc-');
  await publicMember(name);
  assert.equal(await statusOf(api.get({ path: `/channels/${name}`, params: { info: 'user_count' } })), 400);
});

test('GET /channels/<presence>/users lists each user once', async () => {
  const name = uniq('presence-users-');
  await presenceMember(name, 'u1');
  await presenceMember(name, 'u1');
  await presenceMember(name, 'u2');
  const body = await json(await api.get({ path: `/channels/${name}/users` }));
  assert.deepEqual(body.users.map((u) => u.id).sort(), ['u1', 'u2']);
  assert.deepEqual(body.users.find((u) => u.id === 'u1'), { id: 'u1' });
  const empty = await json(await api.get({ path: `/channels/${uniq('presence-none-')}/users` }));
  assert.deepEqual(empty, { users: [] });
});

test('GET /channels/<non-presence>/users is 400', async () => {
  assert.equal(await statusOf(api.get({ path: `/channels/${uniq('pub-')}/users` })), 400);
  assert.equal(await statusOf(api.get({ path: `/channels/${uniq('private-')}/users` })), 400);
});

// ------------------------------------------------------------------ auth and validation errors

test('wrong secret is 401 and nothing is delivered', async () => {
  const name = uniq('badsig-');
  const r = await publicMember(name);
  const bad = sdk(srv, { ...APPS.main, secret: 'wrong-secret' });
  assert.equal(await statusOf(bad.trigger(name, 'ev', 'x')), 401);
  assert.equal(await statusOf(bad.get({ path: '/channels' })), 401);
  await r.none((j) => j.event === 'ev', 300);
});

test('auth_key of another app is 401', async () => {
  const other = sdk(srv, { ...APPS.main, key: APPS.noClientEvents.key });
  assert.equal(await statusOf(other.get({ path: '/channels' })), 401);
});

test('unknown app id is 404', async () => {
  const ghost = sdk(srv, { id: '999', key: 'app-key', secret: 'app-secret' });
  assert.equal(await statusOf(ghost.trigger('x', 'ev', 'x')), 404);
  assert.equal(await statusOf(ghost.get({ path: '/channels' })), 404);
});

test('timestamp older than 600 s is 401; a fresh hand-signed request is 200', async () => {
  const body = JSON.stringify({ name: 'ev', data: 'x', channels: ['stale'] });
  const fresh = await signedFetch(srv, { path: '/apps/1/events', body });
  assert.equal(fresh.status, 200, `hand-signed control request failed: ${fresh.text}`);
  const stale = await signedFetch(srv, {
    path: '/apps/1/events', body, timestamp: Math.floor(Date.now() / 1000) - 700,
  });
  assert.equal(stale.status, 401);
  const future = await signedFetch(srv, {
    path: '/apps/1/events', body, timestamp: Math.floor(Date.now() / 1000) + 700,
  });
  assert.equal(future.status, 401);
  const withinWindow = await signedFetch(srv, {
    path: '/apps/1/events', body, timestamp: Math.floor(Date.now() / 1000) - 500,
  });
  assert.equal(withinWindow.status, 200, 'a 500 s old timestamp is inside the 600 s window');
});

test('body_md5 that does not match the body is rejected (400 or 401)', async () => {
  const body = JSON.stringify({ name: 'ev', data: 'x', channels: ['md5'] });
  const res = await signedFetch(srv, { path: '/apps/1/events', body, md5Of: '{}' });
  assert.ok([400, 401].includes(res.status), `got ${res.status}: ${res.text}`);
});

test('body that is not JSON is 400', async () => {
  const res = await signedFetch(srv, { path: '/apps/1/events', body: 'this is not json' });
  assert.equal(res.status, 400);
});

for (const [label, payload] of [
  ['missing name', { data: 'x', channels: ['c'] }],
  ['missing data', { name: 'ev', channels: ['c'] }],
  ['missing channels', { name: 'ev', data: 'x' }],
  ['invalid socket_id', { name: 'ev', data: 'x', channels: ['c'], socket_id: 'abc' }],
  ['event name over 200 chars', { name: 'e'.repeat(201), data: 'x', channels: ['c'] }],
]) {
  test(`trigger body with ${label} is 400`, async () => {
    const res = await signedFetch(srv, { path: '/apps/1/events', body: JSON.stringify(payload) });
    assert.equal(res.status, 400, res.text);
  });
}

test('trigger body with a single "channel" instead of "channels" is accepted', async () => {
  const name = uniq('single-');
  const r = await publicMember(name);
  const res = await signedFetch(srv, {
    path: '/apps/1/events', body: JSON.stringify({ name: 'one', data: 'd', channel: name }),
  });
  assert.equal(res.status, 200, res.text);
  assert.equal((await r.event('one', name)).json.data, 'd');
});

test('trigger to more than 100 channels is 400', async () => {
  const channels = Array.from({ length: 101 }, (_, i) => `c${i}`);
  const res = await signedFetch(srv, {
    path: '/apps/1/events', body: JSON.stringify({ name: 'ev', data: 'x', channels }),
  });
  assert.equal(res.status, 400, res.text);
});

test('trigger to an invalid channel name is 400', async () => {
  const res = await signedFetch(srv, {
    path: '/apps/1/events', body: JSON.stringify({ name: 'ev', data: 'x', channels: ['bad name!'] }),
  });
  assert.equal(res.status, 400, res.text);
});

test('trigger with an event name starting with pusher: is 400 and not delivered', async () => {
  const name = uniq('reserved-');
  const r = await publicMember(name);
  assert.equal(await statusOf(api.trigger(name, 'pusher:fake', 'x')), 400);
  assert.equal(await statusOf(api.trigger(name, 'pusher_internal:fake', 'x')), 400);
  await r.none((j) => j.event.includes(':fake'), 300);
});

test('a 200-character channel name (SDK maximum) works end to end', async () => {
  const name = uniq('long-').padEnd(200, 'x');
  assert.equal(name.length, 200);
  const r = await publicMember(name);
  await api.trigger(name, 'ev', 'long');
  assert.equal((await r.event('ev', name)).json.data, 'long');
  const body = await json(await api.get({ path: `/channels/${name}`, params: { info: 'subscription_count' } }));
  assert.equal(body.subscription_count, 1);
});

test('triggerBatch socket_id excludes that socket for that event only', async () => {
  const name = uniq('bexcl-');
  const a = await publicMember(name);
  const b = await publicMember(name);
  await api.triggerBatch([
    { channel: name, name: 'skip-a', data: '1', socket_id: a.socketId },
    { channel: name, name: 'to-all', data: '2' },
  ]);
  await b.event('skip-a', name);
  await a.event('to-all', name);
  await b.event('to-all', name);
  await a.none((j) => j.event === 'skip-a', 200);
});

test('closing sockets removes them from subscription_count, user_count and the channel list', async () => {
  const pub = uniq('gone-');
  const pres = uniq('presence-gone-');
  const a = await publicMember(pub);
  const b = await publicMember(pub);
  const u1 = await presenceMember(pres, 'u1');
  const u2 = await presenceMember(pres, 'u2');
  b.disconnect();
  u2.disconnect();
  await sleep(300);
  assert.deepEqual(await json(await api.get({ path: `/channels/${pub}`, params: { info: 'subscription_count' } })),
    { occupied: true, subscription_count: 1 });
  assert.equal((await json(await api.get({ path: `/channels/${pres}`, params: { info: 'user_count' } }))).user_count, 1);
  a.disconnect();
  u1.disconnect();
  await sleep(300);
  assert.equal((await json(await api.get({ path: `/channels/${pub}` }))).occupied, false);
  assert.deepEqual(await json(await api.get({ path: `/channels/${pres}/users` })), { users: [] });
  const list = await json(await api.get({ path: '/channels', params: { filter_by_prefix: pres } }));
  assert.deepEqual(list, { channels: {} });
});

test('channel names with = @ , . ; work in SDK-built (unescaped) HTTP paths', async () => {
  const name = `${uniq('presence-odd')}=a@b,c.d;e`;
  await presenceMember(name, 'odd');
  const info = await json(await api.get({ path: `/channels/${name}`, params: { info: 'user_count' } }));
  assert.deepEqual(info, { occupied: true, user_count: 1 });
  assert.deepEqual(await json(await api.get({ path: `/channels/${name}/users` })), { users: [{ id: 'odd' }] });
});

test('the 10 KB data limit counts bytes, not characters', async () => {
  const name = uniq('utf8-size-');
  assert.equal(await statusOf(api.trigger(name, 'ev', '☃'.repeat(3500))), 413); // 10500 bytes
  const ok = await api.trigger(name, 'ev', '☃'.repeat(3400)); // 10200 bytes
  assert.equal(ok.status, 200);
});
