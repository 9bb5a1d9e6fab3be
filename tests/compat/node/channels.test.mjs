// Public, private and encrypted channels; subscription errors (spec §3, §4, §10.2 #7-10).
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import {
  APPS, MASTER_KEY_B64, Raw, startServer, closeAll, uniq, sdk, hmac,
  connectedClient, subscribe, nextEvent, collect, sleep,
} from './harness.mjs';

let srv;
before(async () => { srv = await startServer(); });
after(async () => { await srv.stop(); });
afterEach(closeAll);

// ------------------------------------------------------------------ public

test('pusher-js subscribes to a public channel and receives a triggered event as an object', async () => {
  const c = await connectedClient(srv);
  const name = uniq('public-');
  const ch = await subscribe(c, name);
  const got = nextEvent(ch, 'greeting');
  await sdk(srv).trigger(name, 'greeting', { hello: 'world', n: 1 });
  assert.deepEqual((await got).data, { hello: 'world', n: 1 });
});

test('public subscribe with auth "" (pusher-js form) succeeds with data "{}"', async () => {
  const r = await Raw.connect(srv);
  const name = uniq('pub-');
  r.send({ event: 'pusher:subscribe', data: { auth: '', channel: name } });
  const f = await r.event('pusher_internal:subscription_succeeded', name);
  assert.equal(f.json.channel, name);
  assert.equal(f.json.data, '{}', 'non-presence success data must be the string "{}"');
});

test('public subscribe without an auth key (Pysher form) succeeds with data "{}"', async () => {
  const r = await Raw.connect(srv);
  const name = uniq('pub-');
  r.send({ event: 'pusher:subscribe', data: { channel: name } });
  const f = await r.event('pusher_internal:subscription_succeeded', name);
  assert.equal(f.json.data, '{}');
});

test('duplicate subscribe gets a code-null error and no second subscription_succeeded', async () => {
  const r = await Raw.connect(srv);
  const name = uniq('dup-');
  await r.subscribe(name, { auth: '' });
  r.send({ event: 'pusher:subscribe', data: { auth: '', channel: name } });
  const e = await r.error();
  assert.ok(!('channel' in e.json));
  assert.equal(e.json.data.code, null);
  assert.match(e.json.data.message, /^Existing subscription to channel /);
  assert.ok(e.json.data.message.includes(name));
  await r.none((j) => j.event === 'pusher_internal:subscription_succeeded');
  // The first subscription is kept: events still arrive exactly once.
  await sdk(srv).trigger(name, 'once', 'x');
  await r.event('once', name);
  await r.none((j) => j.event === 'once', 300);
});

test('channel events carry channel at top level and HTTP data verbatim', async () => {
  const r = await Raw.connect(srv);
  const name = uniq('top-');
  await r.subscribe(name, { auth: '' });
  await sdk(srv).trigger(name, 'thing', { a: 1 });
  const f = await r.event('thing', name);
  assert.deepEqual(Object.keys(f.json).sort(), ['channel', 'data', 'event']);
  assert.equal(f.json.data, '{"a":1}');
});

test('after unsubscribe no more events are delivered', async () => {
  const c = await connectedClient(srv);
  const name = uniq('unsub-');
  const ch = await subscribe(c, name);
  const got = collect(ch, 'ev');
  c.unsubscribe(name);
  await sleep(200);
  const raw = c.messages.length;
  await sdk(srv).trigger(name, 'ev', 'x');
  await sleep(400);
  assert.equal(got.length, 0);
  assert.ok(!c.messages.slice(raw).some((m) => m.event === 'ev'), 'server still sent the event');
});

// ------------------------------------------------------------------ private

test('pusher-js subscribes to a private channel authorized by the npm SDK and receives events', async () => {
  const c = await connectedClient(srv);
  const name = uniq('private-');
  const ch = await subscribe(c, name);
  const got = nextEvent(ch, 'secret');
  await sdk(srv).trigger(name, 'secret', { v: 42 });
  assert.deepEqual((await got).data, { v: 42 });
});

/** The socket must stay open and the channel must not be joined after a subscription error. */
async function assertNotJoined(r, name) {
  await r.none((j) => j.event === 'pusher_internal:subscription_succeeded', 300);
  await r.ping();
  await sdk(srv).trigger(name, 'leak', 'x');
  await r.none((j) => j.event === 'leak', 300);
}

test('private subscribe without auth: code-null "Auth info required" error, socket stays open', async () => {
  const r = await Raw.connect(srv);
  const name = uniq('private-');
  r.send({ event: 'pusher:subscribe', data: { channel: name } });
  const e = await r.error();
  assert.ok(!('channel' in e.json));
  assert.equal(e.json.data.code, null);
  assert.match(e.json.data.message, /^Auth info required to subscribe to /);
  assert.ok(e.json.data.message.includes(name), e.json.data.message);
  await assertNotJoined(r, name);
});

test('private subscribe with empty auth: code-null "Auth info required" error', async () => {
  const r = await Raw.connect(srv);
  const name = uniq('private-');
  r.send({ event: 'pusher:subscribe', data: { auth: '', channel: name } });
  const e = await r.error();
  assert.equal(e.json.data.code, null);
  assert.match(e.json.data.message, /^Auth info required to subscribe to /);
  await assertNotJoined(r, name);
});

test('private subscribe with a wrong signature: code-null "Invalid signature" error', async () => {
  const r = await Raw.connect(srv);
  const name = uniq('private-');
  r.send({ event: 'pusher:subscribe', data: { auth: `app-key:${'0'.repeat(64)}`, channel: name } });
  const e = await r.error();
  assert.equal(e.json.data.code, null);
  assert.match(e.json.data.message, /^Invalid signature/);
  await assertNotJoined(r, name);
});

test('private auth signed for another socket id is rejected', async () => {
  const r = await Raw.connect(srv);
  const name = uniq('private-');
  const auth = `app-key:${hmac(APPS.main.secret, `1234.5678:${name}`)}`;
  r.send({ event: 'pusher:subscribe', data: { auth, channel: name } });
  const e = await r.error();
  assert.equal(e.json.data.code, null);
  assert.match(e.json.data.message, /^Invalid signature/);
  await assertNotJoined(r, name);
});

test('private auth signed with the wrong secret is rejected', async () => {
  const r = await Raw.connect(srv);
  const name = uniq('private-');
  const auth = `app-key:${hmac('not-the-secret', `${r.socketId}:${name}`)}`;
  r.send({ event: 'pusher:subscribe', data: { auth, channel: name } });
  const e = await r.error();
  assert.equal(e.json.data.code, null);
  assert.match(e.json.data.message, /^Invalid signature/);
  await assertNotJoined(r, name);
});

test('private auth with another app key: code-null "Invalid key in subscription auth data"', async () => {
  const r = await Raw.connect(srv);
  const name = uniq('private-');
  const auth = `other-key:${hmac(APPS.main.secret, `${r.socketId}:${name}`)}`;
  r.send({ event: 'pusher:subscribe', data: { auth, channel: name } });
  const e = await r.error();
  assert.equal(e.json.data.code, null);
  assert.ok(e.json.data.message.startsWith("Invalid key in subscription auth data: 'other-key"),
    e.json.data.message);
  await assertNotJoined(r, name);
});

test('a correctly signed raw private subscribe succeeds with data "{}"', async () => {
  const r = await Raw.connect(srv);
  const name = uniq('private-');
  const f = await r.subscribe(name, { secret: APPS.main.secret });
  assert.equal(f.json.data, '{}');
});

// ------------------------------------------------------------------ encrypted

test('encrypted channel: npm SDK encrypts, server relays, pusher-js decrypts to the original object', async () => {
  const c = await connectedClient(srv, { masterKey: MASTER_KEY_B64 });
  const name = uniq('private-encrypted-');
  const ch = await subscribe(c, name);
  const got = nextEvent(ch, 'vault');
  const payload = { msg: 'top secret', n: [1, 2, 3], u: 'héllo ☃' };
  await sdk(srv, APPS.main, { encryptionMasterKeyBase64: MASTER_KEY_B64 }).trigger(name, 'vault', payload);
  assert.deepEqual((await got).data, payload);
});

test('encrypted channel payload reaches a raw subscriber as an untouched {nonce, ciphertext} string', async () => {
  const r = await Raw.connect(srv);
  const name = uniq('private-encrypted-');
  await r.subscribe(name, { secret: APPS.main.secret });
  await sdk(srv, APPS.main, { encryptionMasterKeyBase64: MASTER_KEY_B64 }).trigger(name, 'vault', { a: 1 });
  const f = await r.event('vault', name);
  assert.equal(typeof f.json.data, 'string');
  assert.deepEqual(Object.keys(JSON.parse(f.json.data)).sort(), ['ciphertext', 'nonce']);
});

for (const bad of ['bad name!', 'a/b', '#reserved', 'x'.repeat(201)]) {
  test(`subscribing to the invalid channel name "${bad.slice(0, 20)}" (${bad.length} chars) gets an error and no success`, async () => {
    const r = await Raw.connect(srv);
    r.send({ event: 'pusher:subscribe', data: { auth: '', channel: bad } });
    const e = await r.take((j) => j.event === 'pusher:error' || j.event === 'pusher:subscription_error');
    assert.equal(typeof e.json.data, 'object', e.text);
    await r.none((j) => j.event === 'pusher_internal:subscription_succeeded', 300);
    await r.ping();
  });
}

test('unsubscribe then subscribe again succeeds and delivers events once', async () => {
  const r = await Raw.connect(srv);
  const name = uniq('again-');
  await r.subscribe(name, { auth: '' });
  r.send({ event: 'pusher:unsubscribe', data: { channel: name } });
  await r.ping();
  await r.subscribe(name, { auth: '' });
  await sdk(srv).trigger(name, 'ev', 'x');
  await r.event('ev', name);
  await r.none((j) => j.event === 'ev', 300);
});
