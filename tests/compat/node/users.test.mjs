// User sign-in, server-to-user events, watchlist, terminate, authorized connections
// (spec §5.1-§5.6, §8.8).
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import {
  APPS, CONFIG, Raw, startServer, closeAll, uniq, sdk, jsClient, connectedClient, subscribe,
  nextEvent, nextError, waitState, within, sleep, hmac, until,
} from './harness.mjs';

// App 5: authorized connections after 1 s. App 6: watchlist events off.
const AUTHZ = { id: '5', key: 'authz-key', secret: 's5' };
const NO_WATCH = { id: '6', key: 'nowatch-key', secret: 's6' };

let srv;
let api;
before(async () => {
  srv = await startServer({
    config: `${CONFIG}
[[apps]]
id = "5"
key = "authz-key"
secret = "s5"
authorized_connections_timeout = 1

[[apps]]
id = "6"
key = "nowatch-key"
secret = "s6"
enable_watchlist_events = false
`,
  });
  api = sdk(srv);
});
after(async () => { await srv.stop(); });
afterEach(closeAll);

const uid = (p) => uniq(`${p}-`).replace(/-/g, '_');

/** pusher-js client that signs in as `userData` and waits for its #server-to-user subscription. */
async function signedIn(userData, opts = {}) {
  const c = await connectedClient(srv, { signinAs: userData, ...opts });
  const channel = `#server-to-user-${userData.id}`;
  const ok = within(new Promise((resolve) => {
    const cb = (m) => {
      if (m.event === 'pusher_internal:subscription_succeeded' && m.channel === channel) resolve();
    };
    c.connection.bind('message', cb);
  }), 4000, `subscription_succeeded on ${channel}`);
  c.signin();
  await ok;
  return c;
}

/** Next pusher-js user event `event` (from pusher.user.bind). */
function nextUserEvent(c, event, ms = 3000) {
  return within(new Promise((resolve) => {
    const cb = (data) => { c.user.unbind(event, cb); resolve(data); };
    c.user.bind(event, cb);
  }), ms, `user event ${event}`);
}

/** Collect watchlist elements emitted by pusher-js as [name, user_ids]. */
function watchlog(c) {
  const got = [];
  for (const name of ['online', 'offline']) {
    c.user.watchlist.bind(name, (e) => got.push([e.name, [...e.user_ids].sort()]));
  }
  return got;
}

const watchData = (f) => (typeof f.json.data === 'string' ? JSON.parse(f.json.data) : f.json.data);

// ---------------------------------------------------------------- sign-in

test('raw signin: signin_success carries the exact user_data string inside a data object', async () => {
  const r = await Raw.connect(srv);
  const text = '{"id":"ada-raw","user_info":{"name":"Ada" , "x":[1, 2]}}'; // non-canonical spacing kept
  r.signin(text);
  const f = await r.event('pusher:signin_success');
  assert.deepEqual(f.json, { event: 'pusher:signin_success', data: { user_data: text } });
  assert.equal(f.json.data.user_data, text);
  await r.ping();
});

test('pusher-js signin(): signin_success, user.user_data, and #server-to-user subscription succeeds', async () => {
  const id = uid('ada');
  const userData = { id, user_info: { name: 'Ada' } };
  const c = await signedIn(userData);
  const success = c.messages.find((m) => m.event === 'pusher:signin_success');
  assert.deepEqual(success.data, { user_data: JSON.stringify(userData) });
  assert.deepEqual(c.user.user_data, userData);
  const sub = c.messages.find((m) => m.event === 'pusher_internal:subscription_succeeded');
  assert.equal(sub.channel, `#server-to-user-${id}`);
});

test('sendToUser reaches every socket signed in as the user (user.bind), not another user', async () => {
  const ada = uid('ada');
  const bob = uid('bob');
  const a1 = await signedIn({ id: ada });
  const a2 = await signedIn({ id: ada });
  const b = await signedIn({ id: bob });
  const bobGot = [];
  b.user.bind('note', (d) => bobGot.push(d));
  const got1 = nextUserEvent(a1, 'note');
  const got2 = nextUserEvent(a2, 'note');
  const res = await api.sendToUser(ada, 'note', { text: 'hi ✓' });
  assert.equal(res.status, 200);
  assert.deepEqual(await got1, { text: 'hi ✓' });
  assert.deepEqual(await got2, { text: 'hi ✓' });
  const frame = a1.messages.find((m) => m.event === 'note');
  assert.equal(frame.channel, `#server-to-user-${ada}`);
  await sleep(400);
  assert.deepEqual(bobGot, []);
  assert.ok(!b.messages.some((m) => m.event === 'note'), 'bob must not see ada\'s event');
});

test('raw: server-to-user frame is delivered verbatim; #server-to-user of another id is refused', async () => {
  const ada = uid('ada');
  const r = await Raw.connect(srv);
  r.signin({ id: ada });
  await r.event('pusher:signin_success');
  // Delivered to the signed-in socket even without subscribing to the channel (§5.3).
  const data = '{"text" : "hi",  "n":[1, 2]}';
  await api.sendToUser(ada, 'notification', data);
  const f = await r.event('notification');
  assert.deepEqual(f.json, { event: 'notification', channel: `#server-to-user-${ada}`, data });

  r.send({ event: 'pusher:subscribe', data: { channel: `#server-to-user-${ada}`, auth: '' } });
  const ok = await r.event('pusher_internal:subscription_succeeded', `#server-to-user-${ada}`);
  assert.equal(ok.json.data, '{}');

  const other = `#server-to-user-${uid('bob')}`;
  r.send({ event: 'pusher:subscribe', data: { channel: other, auth: '' } });
  const err = await r.error();
  assert.equal(err.json.channel, undefined);
  await r.none((j) => j.event === 'pusher_internal:subscription_succeeded' && j.channel === other, 300);
  await r.ping();
});

test('not signed in: #server-to-user subscription is refused and sendToUser reaches nobody', async () => {
  const id = uid('nobody');
  const r = await Raw.connect(srv);
  r.send({ event: 'pusher:subscribe', data: { channel: `#server-to-user-${id}`, auth: '' } });
  await r.error();
  await api.sendToUser(id, 'note', 'x');
  await r.none((j) => j.event === 'note' || j.event === 'pusher_internal:subscription_succeeded', 400);
  await r.ping();
});

test('bad sign-in signature: pusher:error 4009 then close 4009', async () => {
  const r = await Raw.connect(srv);
  r.signin({ id: uid('eve') }, { secret: 'wrong-secret' });
  const err = await r.error();
  assert.equal(err.json.data.code, 4009);
  assert.equal(typeof err.json.data.message, 'string');
  const closed = await within(r.closed, 3000, 'close after failed signin');
  assert.equal(closed.code, 4009);
  assert.ok(!r.frames.some((f) => f.json?.event === 'pusher:signin_success'));
});

test('sign-in rejected (4009) for user_data without a string id, and for a mismatched key', async () => {
  for (const [userData, opts] of [
    ['{"user_info":{}}', {}],
    ['{"id":42}', {}],
    ['{"id":""}', {}],
    ['not json', {}],
    [{ id: uid('kay') }, { key: 'app-key-2' }],
  ]) {
    const r = await Raw.connect(srv);
    r.signin(userData, opts);
    const err = await r.error();
    assert.equal(err.json.data.code, 4009, `user_data ${JSON.stringify(userData)}`);
    assert.equal((await within(r.closed, 3000, 'close')).code, 4009);
  }
});

test('signing in again as a different user fails with 4009', async () => {
  const r = await Raw.connect(srv);
  r.signin({ id: uid('first') });
  await r.event('pusher:signin_success');
  r.signin({ id: uid('second') });
  const err = await r.error();
  assert.equal(err.json.data.code, 4009);
  assert.equal((await within(r.closed, 3000, 'close')).code, 4009);
});

test('pusher-js with a bad user-auth signature gets a 4009 error and does not reconnect', async () => {
  const c = jsClient(srv, {
    userAuth: ({ socketId }, cb) => cb(null, { auth: `app-key:${'0'.repeat(64)}`, user_data: `{"id":"${uid('eve')}"}` }),
  });
  await waitState(c, 'connected');
  c.signin();
  const err = await nextError(c, (e) => e.data?.code === 4009);
  assert.equal(err.type, 'PusherError');
  await until(() => c.connection.state !== 'connected', 'pusher-js leaving connected');
  await sleep(1500);
  assert.ok(['disconnected', 'unavailable', 'failed'].includes(c.connection.state), c.connection.state);
  assert.equal(c.user.user_data, null);
});

// ---------------------------------------------------------------- watchlist

test('watchlist: initial status on signin, then online/offline via user.watchlist.bind', async () => {
  const bob = uid('bob');
  const carol = uid('carol');
  const dave = uid('dave');
  const carolC = await signedIn({ id: carol });
  const a = jsClient(srv, { signinAs: { id: uid('ada'), watchlist: [bob, carol, dave] } });
  const log = watchlog(a);
  await waitState(a, 'connected');
  a.signin();
  await until(() => log.length >= 2, 'initial watchlist events');
  const initial = a.messages.filter((m) => m.event === 'pusher_internal:watchlist_events');
  assert.equal(initial.length, 1, 'initial status is one frame');
  assert.deepEqual([...log].sort(), [['offline', [bob, dave].sort()], ['online', [carol]]]);
  log.length = 0;

  const b1 = await signedIn({ id: bob });
  await until(() => log.length >= 1, 'online event');
  assert.deepEqual(log, [['online', [bob]]]);
  const b2 = await signedIn({ id: bob }); // second socket of bob: no new event
  await sleep(300);
  assert.deepEqual(log, [['online', [bob]]]);

  b1.disconnect();
  await sleep(400);
  assert.deepEqual(log, [['online', [bob]]], 'bob still has a socket');
  b2.disconnect();
  await until(() => log.length >= 2, 'offline event');
  assert.deepEqual(log, [['online', [bob]], ['offline', [bob]]]);

  carolC.disconnect();
  await until(() => log.length >= 3, 'offline event for carol');
  assert.deepEqual(log[2], ['offline', [carol]]);
});

test('raw watchlist frames: connection-level, events array of {name, user_ids}; no unwatched ids', async () => {
  const bob = uid('bob');
  const w = await Raw.connect(srv);
  w.signin({ id: uid('watcher'), watchlist: [bob] });
  await w.event('pusher:signin_success');
  const first = await w.event('pusher_internal:watchlist_events');
  assert.equal(first.json.channel, undefined);
  assert.deepEqual(watchData(first), { events: [{ name: 'offline', user_ids: [bob] }] });

  const unwatched = await Raw.connect(srv);
  unwatched.signin({ id: uid('stranger') });
  await unwatched.event('pusher:signin_success');
  const b = await Raw.connect(srv);
  b.signin({ id: bob });
  await b.event('pusher:signin_success');
  const on = await w.event('pusher_internal:watchlist_events');
  assert.deepEqual(watchData(on), { events: [{ name: 'online', user_ids: [bob] }] });
  b.disconnect();
  const off = await w.event('pusher_internal:watchlist_events');
  assert.deepEqual(watchData(off), { events: [{ name: 'offline', user_ids: [bob] }] });
  unwatched.disconnect();
  await w.none((j) => j.event === 'pusher_internal:watchlist_events', 400);
});

test('a watched user terminated by the API goes offline for the watcher', async () => {
  const bob = uid('bob');
  const w = await Raw.connect(srv);
  w.signin({ id: uid('watcher'), watchlist: [bob] });
  await w.event('pusher:signin_success');
  await w.event('pusher_internal:watchlist_events');
  const b = await Raw.connect(srv);
  b.signin({ id: bob });
  await b.event('pusher:signin_success');
  assert.deepEqual(watchData(await w.event('pusher_internal:watchlist_events')),
    { events: [{ name: 'online', user_ids: [bob] }] });
  await api.terminateUserConnections(bob);
  assert.deepEqual(watchData(await w.event('pusher_internal:watchlist_events')),
    { events: [{ name: 'offline', user_ids: [bob] }] });
});

test('watchlist of 101 ids: signin succeeds, error 4302, only the first 100 are watched', async () => {
  const ids = Array.from({ length: 101 }, (_, i) => `${uid('w')}_${i}`);
  const r = await Raw.connect(srv);
  const text = r.signin({ id: uid('many'), watchlist: ids });
  const ok = await r.event('pusher:signin_success');
  assert.equal(ok.json.data.user_data, text);
  const err = await r.error();
  assert.deepEqual(err.json.data, {
    code: 4302, message: 'Watchlist limit exceeded. Only the first 100 user IDs are accepted.',
  });
  const initial = watchData(await r.event('pusher_internal:watchlist_events'));
  assert.deepEqual(initial, { events: [{ name: 'offline', user_ids: ids.slice(0, 100) }] });
  const last = await Raw.connect(srv);
  last.signin({ id: ids[100] });
  await last.event('pusher:signin_success');
  await r.none((j) => j.event === 'pusher_internal:watchlist_events', 400);
  await r.ping();
});

test('enable_watchlist_events = false: no watchlist frames', async () => {
  const bob = uid('bob');
  const r = await Raw.connect(srv, NO_WATCH.key);
  r.signin({ id: uid('ada'), watchlist: [bob] }, { key: NO_WATCH.key, secret: NO_WATCH.secret });
  await r.event('pusher:signin_success');
  const b = await Raw.connect(srv, NO_WATCH.key);
  b.signin({ id: bob }, { key: NO_WATCH.key, secret: NO_WATCH.secret });
  await b.event('pusher:signin_success');
  await r.none((j) => j.event === 'pusher_internal:watchlist_events', 500);
});

// ---------------------------------------------------------------- terminate

test('terminateUserConnections closes every pusher-js socket of the user (4009, no reconnect), not others', async () => {
  const ada = uid('ada');
  const bob = uid('bob');
  const a1 = await signedIn({ id: ada });
  const a2 = await signedIn({ id: ada });
  const b = await signedIn({ id: bob });
  const res = await api.terminateUserConnections(ada);
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), {});
  for (const c of [a1, a2]) {
    const err = await nextError(c, (e) => e.data?.code === 4009);
    assert.equal(err.type, 'PusherError');
    await until(() => c.connection.state !== 'connected', 'pusher-js leaving connected');
  }
  await sleep(1500);
  for (const c of [a1, a2]) {
    assert.ok(['disconnected', 'unavailable', 'failed'].includes(c.connection.state), c.connection.state);
  }
  assert.equal(b.connection.state, 'connected');
  const got = nextUserEvent(b, 'still-here');
  await api.sendToUser(bob, 'still-here', { ok: true });
  assert.deepEqual(await got, { ok: true });
});

test('raw terminate: exact pusher:error 4009 frame then close 4009; presence-only identity untouched', async () => {
  const ada = uid('ada');
  const r = await Raw.connect(srv);
  r.signin({ id: ada });
  await r.event('pusher:signin_success');
  // Same id as a presence member only (no signin): not affected (§5.5).
  const p = await Raw.connect(srv);
  await p.subscribe(uniq('presence-term-'), { secret: APPS.main.secret, channelData: JSON.stringify({ user_id: ada }) });
  await api.terminateUserConnections(ada);
  const err = await r.error();
  assert.equal(err.json.data.code, 4009);
  assert.equal(typeof err.json.data.message, 'string');
  assert.equal((await within(r.closed, 3000, 'close')).code, 4009);
  await p.ping();
});

test('terminate of a user with no connections answers 200 {}', async () => {
  const res = await api.terminateUserConnections(uid('ghost'));
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), {});
});

// ---------------------------------------------------------------- presence via signed-in user

test('presence without channel_data on a signed-in pusher-js connection uses the signed-in user', async () => {
  const name = uniq('presence-signed-');
  const id = uid('ada');
  const watcher = await connectedClient(srv, { user: { user_id: 'bob', user_info: { name: 'Bob' } } });
  const wch = await subscribe(watcher, name);
  const added = nextEvent(wch, 'pusher:member_added');

  const c = await signedIn({ id, user_info: { name: 'Ada' } }); // no `user`: auth lacks channel_data
  const ch = await subscribe(c, name);
  assert.deepEqual(ch.members.me, { id, info: { name: 'Ada' } });
  assert.equal(ch.members.count, 2);
  assert.deepEqual((await added).data, { id, info: { name: 'Ada' } });
});

test('raw presence without channel_data: signed-in user is the member (user_info null when absent)', async () => {
  const name = uniq('presence-signed-raw-');
  const id = uid('ada');
  const r = await Raw.connect(srv);
  r.signin({ id });
  await r.event('pusher:signin_success');
  const f = await r.subscribe(name, { secret: APPS.main.secret });
  const p = JSON.parse(f.json.data).presence;
  assert.deepEqual(p.ids, [id]);
  assert.equal(p.count, 1);
  assert.ok(Object.hasOwn(p.hash, id));
  assert.equal(p.hash[id], null);
});

test('raw presence without channel_data and without signin is refused', async () => {
  const name = uniq('presence-nosign-');
  const r = await Raw.connect(srv);
  r.send({
    event: 'pusher:subscribe',
    data: { channel: name, auth: `${APPS.main.key}:${hmac(APPS.main.secret, `${r.socketId}:${name}`)}` },
  });
  await r.error();
  await r.none((j) => j.event === 'pusher_internal:subscription_succeeded', 300);
});

// ---------------------------------------------------------------- authorized connections

test('authorized_connections_timeout: idle or public-only connection gets 4009 "within timeout" and close 4009', async () => {
  const idle = await Raw.connect(srv, AUTHZ.key);
  const pub = await Raw.connect(srv, AUTHZ.key);
  await pub.subscribe(uniq('public-'));
  for (const r of [idle, pub]) {
    const err = await r.error(3000);
    assert.equal(err.json.data.code, 4009);
    assert.match(err.json.data.message, /within timeout\.$/);
    assert.equal((await within(r.closed, 2000, 'close')).code, 4009);
  }
});

test('authorized_connections_timeout: signing in or a private/presence subscription keeps the connection', async () => {
  const signed = await Raw.connect(srv, AUTHZ.key);
  signed.signin({ id: uid('ok') }, { key: AUTHZ.key, secret: AUTHZ.secret });
  await signed.event('pusher:signin_success');
  const priv = await Raw.connect(srv, AUTHZ.key);
  await priv.subscribe(uniq('private-ok-'), { secret: AUTHZ.secret, key: AUTHZ.key });
  const pres = await Raw.connect(srv, AUTHZ.key);
  await pres.subscribe(uniq('presence-ok-'), { secret: AUTHZ.secret, key: AUTHZ.key, channelData: '{"user_id":"p"}' });
  await sleep(1800);
  for (const r of [signed, priv, pres]) {
    assert.ok(!r.frames.some((f) => f.json?.event === 'pusher:error'), 'no error expected');
    await r.ping();
  }
});

test('authorized_connections_timeout is off by default (app 1 connection stays open)', async () => {
  const r = await Raw.connect(srv);
  await sleep(1500);
  await r.ping();
});
