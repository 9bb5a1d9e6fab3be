// Connection handshake: connection_established, accepted protocols, handshake errors.
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import {
  APPS, ACTIVITY_TIMEOUT, SOCKET_ID_RE, Raw, startServer, closeAll, jsClient,
  waitState, nextError, sleep,
} from './harness.mjs';

let srv;
before(async () => { srv = await startServer(); });
after(async () => { await srv.stop(); });
afterEach(closeAll);

test('pusher-js reaches state connected and gets a digits.digits socket id', async () => {
  const c = jsClient(srv);
  await waitState(c, 'connected');
  assert.match(c.connection.socket_id, SOCKET_ID_RE);
});

test('two connections get different socket ids', async () => {
  const a = await Raw.connect(srv);
  const b = await Raw.connect(srv);
  assert.notEqual(a.socketId, b.socketId);
});

test('connection_established is the first frame, data is a JSON string with socket_id and activity_timeout', async () => {
  const r = new Raw(Raw.url(srv));
  const first = await r.take();
  assert.equal(r.frames[0], first, 'connection_established must be the very first frame');
  assert.equal(first.json.event, 'pusher:connection_established');
  assert.ok(!('channel' in first.json), 'connection-level frame must not carry a channel key');
  assert.equal(typeof first.json.data, 'string', 'data must be double-encoded');
  const data = JSON.parse(first.json.data);
  assert.match(data.socket_id, SOCKET_ID_RE);
  assert.equal(data.activity_timeout, ACTIVITY_TIMEOUT);
});

for (const query of ['protocol=5', 'protocol=6', 'protocol=7', 'client=Pysher&version=1.0.7&protocol=6', null]) {
  test(`handshake accepted with query ${query === null ? '(none: defaults to 7)' : query}`, async () => {
    const r = await Raw.connect(srv, APPS.main.key, query);
    assert.match(r.socketId, SOCKET_ID_RE);
  });
}

/** Raw handshake that must fail: error frame with numeric code, then close with the same code. */
async function expectHandshakeError(url, code) {
  const r = new Raw(url);
  const f = await r.error();
  assert.equal(r.frames[0], f, 'the error frame must be the first frame');
  assert.ok(!('channel' in f.json));
  assert.equal(typeof f.json.data, 'object', 'pusher:error data must be an object, not a string');
  assert.equal(f.json.data.code, code);
  assert.equal(typeof f.json.data.message, 'string');
  assert.ok(f.json.data.message.length > 0);
  const closed = await Promise.race([r.closed, sleep(3000).then(() => ({ code: 'not closed' }))]);
  assert.equal(closed.code, code, 'socket must be closed with the same code');
  assert.ok(!r.frames.some((x) => x.json?.event === 'pusher:connection_established'));
}

test('unknown app key: pusher:error 4001 then close 4001', async () => {
  await expectHandshakeError(Raw.url(srv, 'no-such-key'), 4001);
});

test('disabled app: pusher:error 4003 then close 4003', async () => {
  await expectHandshakeError(Raw.url(srv, APPS.disabled.key), 4003);
});

for (const p of ['/nope/app-key?protocol=7', '/app/app-key/extra?protocol=7', '/apps/app-key?protocol=7']) {
  test(`wrong path ${p}: pusher:error 4005 then close 4005`, async () => {
    await expectHandshakeError(`ws://${srv.host}:${srv.port}${p}`, 4005);
  });
}

for (const proto of ['3', 'abc', '8']) {
  test(`unsupported protocol=${proto}: pusher:error 4007 then close 4007`, async () => {
    await expectHandshakeError(Raw.url(srv, APPS.main.key, `protocol=${proto}`), 4007);
  });
}

/** pusher-js sees a 40xx refusal: error event with the code, state disconnected, no retry. */
async function expectPusherJsRefused(c, code) {
  const e = await nextError(c, (x) => x.error?.data?.code === code || x.data?.code === code, 5000);
  assert.ok(e, `pusher-js should surface error code ${code}`);
  await waitState(c, 'disconnected', 3000);
  const states = [];
  c.connection.bind('state_change', (s) => states.push(s.current));
  await sleep(1500);
  assert.deepEqual(states, [], 'pusher-js must not retry after a 4001-4099 refusal');
  assert.equal(c.connection.state, 'disconnected');
}

test('pusher-js with an unknown key stops with 4001 and does not retry', async () => {
  await expectPusherJsRefused(jsClient(srv, { app: { ...APPS.main, key: 'no-such-key' } }), 4001);
});

test('pusher-js on a disabled app stops with 4003 and does not retry', async () => {
  await expectPusherJsRefused(jsClient(srv, { app: APPS.disabled }), 4003);
});

test('max_connections=1: second connection gets 4004, slot is freed when the first closes', async () => {
  const first = await Raw.connect(srv, APPS.tiny.key);
  await expectHandshakeError(Raw.url(srv, APPS.tiny.key), 4004);
  const c = jsClient(srv, { app: APPS.tiny });
  await expectPusherJsRefused(c, 4004);
  first.disconnect();
  await first.closed;
  // The server may need a moment to notice the close; retry briefly.
  let ok;
  for (let i = 0; i < 20 && !ok; i += 1) {
    await sleep(100);
    const r = new Raw(Raw.url(srv, APPS.tiny.key));
    const f = await r.take();
    if (f.json.event === 'pusher:connection_established') ok = r; else r.disconnect();
  }
  assert.ok(ok, 'a new connection must be accepted after the only slot was released');
});
