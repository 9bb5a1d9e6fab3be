// Client events between sockets (spec §6, §10.2 #12).
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import {
  APPS, Raw, startServer, closeAll, uniq, connectedClient, subscribe, nextEvent, nextError, collect,
  sleep,
} from './harness.mjs';

let srv;
before(async () => { srv = await startServer(); });
after(async () => { await srv.stop(); });
afterEach(closeAll);

async function pair(name, users = [undefined, undefined]) {
  const a = await connectedClient(srv, { user: users[0] });
  const b = await connectedClient(srv, { user: users[1] });
  return { a, b, chA: await subscribe(a, name), chB: await subscribe(b, name) };
}

test('private channel: pusher-js client event reaches the other client, not the sender', async () => {
  const name = uniq('private-chat-');
  const { chA, chB } = await pair(name);
  const echoed = collect(chA, 'client-typing');
  const got = nextEvent(chB, 'client-typing');
  assert.equal(chA.trigger('client-typing', { who: 'Ada', n: 1 }), true);
  const { data, metadata } = await got;
  assert.deepEqual(data, { who: 'Ada', n: 1 });
  assert.equal(metadata?.user_id, undefined, 'no user_id on private channels');
  await sleep(300);
  assert.equal(echoed.length, 0, 'client events must not be echoed to the sender');
});

test('presence channel: client event carries the sender user_id as metadata.user_id', async () => {
  const name = uniq('presence-chat-');
  const { chA, chB } = await pair(name, [
    { user_id: 'ada', user_info: {} }, { user_id: 'bob', user_info: {} },
  ]);
  const echoed = collect(chA, 'client-wave');
  const got = nextEvent(chB, 'client-wave');
  chA.trigger('client-wave', { hi: true });
  const { data, metadata } = await got;
  assert.deepEqual(data, { hi: true });
  assert.equal(metadata.user_id, 'ada');
  await sleep(300);
  assert.equal(echoed.length, 0);
});

async function rawPair(name, channelData) {
  const a = await Raw.connect(srv);
  const b = await Raw.connect(srv);
  await a.subscribe(name, { secret: APPS.main.secret, channelData: channelData?.[0] });
  await b.subscribe(name, { secret: APPS.main.secret, channelData: channelData?.[1] });
  return { a, b };
}

test('raw relay on private: object data stays an object, string data stays a string, no user_id key', async () => {
  const name = uniq('private-raw-');
  const { a, b } = await rawPair(name);
  a.send({ event: 'client-obj', channel: name, data: { who: 'Ada', list: [1, 'two'] } });
  const obj = await b.event('client-obj', name);
  assert.deepEqual(obj.json.data, { who: 'Ada', list: [1, 'two'] });
  assert.ok(!('user_id' in obj.json));
  a.send({ event: 'client-str', channel: name, data: '{"who": "Ada"}' });
  const str = await b.event('client-str', name);
  assert.equal(str.json.data, '{"who": "Ada"}');
  await a.none((j) => j.event.startsWith('client-'), 300);
});

test('raw relay on presence adds a top-level string user_id of the sender', async () => {
  const name = uniq('presence-raw-');
  const { a, b } = await rawPair(name, ['{"user_id":"ada"}', '{"user_id":"bob"}']);
  a.send({ event: 'client-x', channel: name, data: { k: 1 } });
  const f = await b.event('client-x', name);
  assert.equal(f.json.user_id, 'ada');
  assert.deepEqual(f.json.data, { k: 1 });
});

/** Send a client event and expect a code-null connection-level error; socket stays open. */
async function expectRejected(r, frame, messagePattern, other) {
  r.send(frame);
  const e = await r.error();
  assert.ok(!('channel' in e.json) || e.json.channel === frame.channel, e.text);
  assert.equal(e.json.data.code, null, e.text);
  assert.match(e.json.data.message, messagePattern);
  await r.ping();
  if (other) await other.none((j) => j.event === frame.event, 300);
}

test('client events on an app with client messages disabled are rejected (message mentions enable)', async () => {
  const name = uniq('private-off-');
  const a = await Raw.connect(srv, APPS.noClientEvents.key);
  const b = await Raw.connect(srv, APPS.noClientEvents.key);
  const opts = { secret: APPS.noClientEvents.secret, key: APPS.noClientEvents.key };
  await a.subscribe(name, opts);
  await b.subscribe(name, opts);
  await expectRejected(a, { event: 'client-no', channel: name, data: {} }, /enable/i, b);
});

test('client events on a public channel are rejected (only private and presence)', async () => {
  const name = uniq('public-ce-');
  const a = await Raw.connect(srv);
  const b = await Raw.connect(srv);
  await a.subscribe(name, { auth: '' });
  await b.subscribe(name, { auth: '' });
  await expectRejected(a, { event: 'client-no', channel: name, data: {} },
    /only supported on private and presence channels/, b);
});

test('client events on a channel the sender is not subscribed to are rejected (not subscribed)', async () => {
  const name = uniq('private-notsub-');
  const a = await Raw.connect(srv);
  const b = await Raw.connect(srv);
  await b.subscribe(name, { secret: APPS.main.secret });
  await expectRejected(a, { event: 'client-no', channel: name, data: {} }, /not subscribed/, b);
});

test('pusher-js sending to an unsubscribed channel gets the not-subscribed error', async () => {
  const c = await connectedClient(srv);
  c.send_event('client-no', { x: 1 }, uniq('private-never-'));
  const e = await nextError(c, (x) => x.type === 'PusherError');
  assert.equal(e.data.code, null);
  assert.match(e.data.message, /not subscribed/);
  assert.equal(c.connection.state, 'connected');
});

test('more than 10 client events per second: excess rejected with 4301, socket stays open', async () => {
  const name = uniq('private-flood-');
  const { a, b } = await rawPair(name);
  const total = 25;
  for (let i = 0; i < total; i += 1) a.send({ event: 'client-flood', channel: name, data: { i } });
  const e = await a.take((j) => j.event === 'pusher:error' && j.data?.code === 4301, 3000, '4301 error');
  assert.equal(typeof e.json.data.message, 'string');
  await sleep(500);
  const relayed = b.frames.filter((f) => f.json?.event === 'client-flood').length;
  assert.ok(relayed >= 10, `the first 10 events must be relayed (got ${relayed})`);
  assert.ok(relayed < total, 'some events must have been dropped');
  await a.ping();
  // Rate-limit frames must not close the socket.
  const closed = await Promise.race([a.closed, sleep(100).then(() => null)]);
  assert.equal(closed, null);
});

test('a frame whose event is neither pusher:* nor client-* is not relayed', async () => {
  const name = uniq('private-noclient-');
  const { a, b } = await rawPair(name);
  a.send({ event: 'typing', channel: name, data: {} });
  await b.none((j) => j.event === 'typing', 300);
  await a.ping();
});

test('a client event with more than 10 KB of data is not relayed and the socket stays open', async () => {
  const name = uniq('private-bigce-');
  const { a, b } = await rawPair(name);
  a.send({ event: 'client-big', channel: name, data: 'x'.repeat(11 * 1024) });
  await b.none((j) => j.event === 'client-big', 400);
  await a.ping();
  a.send({ event: 'client-small', channel: name, data: 'ok' });
  assert.equal((await b.event('client-small', name)).json.data, 'ok');
});
