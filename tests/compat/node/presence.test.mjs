// Presence channels (spec §3.4, §3.7, §10.2 #11, #17).
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import {
  APPS, Raw, startServer, closeAll, uniq, hmac, connectedClient, subscribe, nextEvent, collect, sleep,
} from './harness.mjs';

let srv;
before(async () => { srv = await startServer(); });
after(async () => { await srv.stop(); });
afterEach(closeAll);

const ada = { user_id: 'ada', user_info: { name: 'Ada' } };
const bob = { user_id: 'bob', user_info: { name: 'Bob' } };

async function member(user, name) {
  const c = await connectedClient(srv, { user });
  const ch = await subscribe(c, name);
  return { c, ch };
}

test('members.count and members.me reflect the subscriber and users already present', async () => {
  const name = uniq('presence-');
  const a = await member(ada, name);
  assert.equal(a.ch.members.count, 1);
  assert.deepEqual(a.ch.members.me, { id: 'ada', info: { name: 'Ada' } });
  const b = await member(bob, name);
  assert.equal(b.ch.members.count, 2);
  assert.deepEqual(b.ch.members.me, { id: 'bob', info: { name: 'Bob' } });
  assert.deepEqual(b.ch.members.get('ada'), { id: 'ada', info: { name: 'Ada' } });
});

test('member_added reaches existing members (not the joiner); member_removed when the user leaves', async () => {
  const name = uniq('presence-');
  const a = await member(ada, name);
  const added = nextEvent(a.ch, 'pusher:member_added');
  const b = await member(bob, name);
  assert.deepEqual((await added).data, { id: 'bob', info: { name: 'Bob' } });
  assert.equal(a.ch.members.count, 2);
  assert.ok(!b.c.messages.some((m) => m.event === 'pusher_internal:member_added'),
    'the subscriber must not get member_added for itself');

  const removed = nextEvent(a.ch, 'pusher:member_removed');
  b.c.disconnect();
  assert.deepEqual((await removed).data, { id: 'bob', info: { name: 'Bob' } });
  assert.equal(a.ch.members.count, 1);
});

test('unsubscribe (not disconnect) also produces member_removed', async () => {
  const name = uniq('presence-');
  const a = await member(ada, name);
  const b = await member(bob, name);
  const removed = nextEvent(a.ch, 'pusher:member_removed');
  b.c.unsubscribe(name);
  assert.equal((await removed).data.id, 'bob');
});

test('the same user on two sockets is one member: one member_added, member_removed only after the last socket', async () => {
  const name = uniq('presence-');
  const watcher = await member(bob, name);
  const addedEvents = collect(watcher.ch, 'pusher:member_added');
  const removedEvents = collect(watcher.ch, 'pusher:member_removed');

  const first = await member(ada, name);
  const second = await member(ada, name);
  await sleep(300);
  assert.equal(addedEvents.length, 1, 'member_added must be sent once per user');
  assert.equal(watcher.ch.members.count, 2);
  assert.equal(second.ch.members.count, 2, 'count counts users, not sockets');
  assert.ok(!first.c.messages.some((m) => m.event === 'pusher_internal:member_added'),
    'no member_added to the other socket of the same user');

  first.c.disconnect();
  await sleep(400);
  assert.equal(removedEvents.length, 0, 'ada still has a socket in the channel');
  const removed = nextEvent(watcher.ch, 'pusher:member_removed');
  second.c.disconnect();
  assert.equal((await removed).data.id, 'ada');
  assert.equal(removedEvents.length, 1);
});

test('raw presence subscription_succeeded: string data with ids, hash (own entry included) and count', async () => {
  const name = uniq('presence-');
  await member(bob, name);
  const r = await Raw.connect(srv);
  const channelData = JSON.stringify(ada);
  const f = await r.subscribe(name, { secret: APPS.main.secret, channelData });
  assert.equal(typeof f.json.data, 'string');
  const p = JSON.parse(f.json.data).presence;
  assert.deepEqual([...p.ids].sort(), ['ada', 'bob']);
  assert.deepEqual(p.hash, { ada: { name: 'Ada' }, bob: { name: 'Bob' } });
  assert.equal(p.count, 2);
});

test('raw member_added / member_removed frames have JSON-string data with string user_id', async () => {
  const name = uniq('presence-');
  const w = await Raw.connect(srv);
  await w.subscribe(name, { secret: APPS.main.secret, channelData: JSON.stringify(bob) });
  const j = await Raw.connect(srv);
  await j.subscribe(name, { secret: APPS.main.secret, channelData: '{"user_id":42,"user_info":{"n":1}}' });
  const added = await w.event('pusher_internal:member_added', name);
  assert.equal(typeof added.json.data, 'string');
  assert.deepEqual(JSON.parse(added.json.data), { user_id: '42', user_info: { n: 1 } });
  j.disconnect();
  const removed = await w.event('pusher_internal:member_removed', name);
  assert.equal(typeof removed.json.data, 'string');
  assert.deepEqual(JSON.parse(removed.json.data), { user_id: '42' });
});

test('numeric user_id is stringified in ids and hash', async () => {
  const name = uniq('presence-');
  const r = await Raw.connect(srv);
  const f = await r.subscribe(name, { secret: APPS.main.secret, channelData: '{"user_id":7}' });
  const p = JSON.parse(f.json.data).presence;
  assert.deepEqual(p.ids, ['7']);
  assert.ok(Object.hasOwn(p.hash, '7'));
  assert.equal(p.count, 1);
});

test('channel_data with spaces (non-canonical JSON) verifies against the bytes as sent', async () => {
  const name = uniq('presence-');
  const r = await Raw.connect(srv);
  const channelData = '{"user_id": "spacey", "user_info": {"name": "S p"}}';
  const f = await r.subscribe(name, { secret: APPS.main.secret, channelData });
  assert.deepEqual(JSON.parse(f.json.data).presence.hash, { spacey: { name: 'S p' } });
});

test('presence subscribe with channel_data not matching the signature is rejected', async () => {
  const name = uniq('presence-');
  const r = await Raw.connect(srv);
  const signed = JSON.stringify(ada);
  const auth = `app-key:${hmac(APPS.main.secret, `${r.socketId}:${name}:${signed}`)}`;
  r.send({ event: 'pusher:subscribe', data: { auth, channel: name, channel_data: JSON.stringify(bob) } });
  const e = await r.error();
  assert.equal(e.json.data.code, null);
  assert.match(e.json.data.message, /^Invalid signature/);
  await r.none((x) => x.event === 'pusher_internal:subscription_succeeded', 300);
});

test('a member without user_info appears in hash with null info', async () => {
  const name = uniq('presence-noinfo-');
  const r = await Raw.connect(srv);
  const f = await r.subscribe(name, { secret: APPS.main.secret, channelData: '{"user_id":"bare"}' });
  assert.deepEqual(JSON.parse(f.json.data).presence.hash, { bare: null });
});

test('a user joining from two sockets with different user_info keeps the first-seen info', async () => {
  const name = uniq('presence-first-');
  const a = await Raw.connect(srv);
  await a.subscribe(name, { secret: APPS.main.secret, channelData: '{"user_id":"u","user_info":{"v":1}}' });
  const b = await Raw.connect(srv);
  const f = await b.subscribe(name, { secret: APPS.main.secret, channelData: '{"user_id":"u","user_info":{"v":2}}' });
  const p = JSON.parse(f.json.data).presence;
  assert.deepEqual(p, { ids: ['u'], hash: { u: { v: 1 } }, count: 1 });
});

for (const [label, channelData] of [
  ['without user_id', '{"user_info":{"name":"x"}}'],
  ['that is not JSON', 'not json'],
]) {
  test(`correctly signed presence channel_data ${label} is rejected`, async () => {
    const name = uniq('presence-bad-');
    const r = await Raw.connect(srv);
    const auth = `app-key:${hmac(APPS.main.secret, `${r.socketId}:${name}:${channelData}`)}`;
    r.send({ event: 'pusher:subscribe', data: { auth, channel: name, channel_data: channelData } });
    const e = await r.error();
    assert.equal(typeof e.json.data, 'object');
    await r.none((x) => x.event === 'pusher_internal:subscription_succeeded', 300);
    await r.ping();
  });
}

test('presence subscribe without channel_data on a socket that is not signed in is rejected', async () => {
  const name = uniq('presence-nodata-');
  const r = await Raw.connect(srv);
  const auth = `app-key:${hmac(APPS.main.secret, `${r.socketId}:${name}`)}`;
  r.send({ event: 'pusher:subscribe', data: { auth, channel: name } });
  const e = await r.error();
  assert.equal(typeof e.json.data, 'object');
  await r.none((x) => x.event === 'pusher_internal:subscription_succeeded', 300);
});
