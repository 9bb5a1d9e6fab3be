// pusher:ping / pusher:pong and robustness against odd client frames (spec §2.1, §10.2 #5, #18).
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { Raw, startServer, closeAll, uniq, sdk } from './harness.mjs';

let srv;
before(async () => { srv = await startServer(); });
after(async () => { await srv.stop(); });
afterEach(closeAll);

const pings = {
  'data {} (pusher-js)': '{"event":"pusher:ping","data":{}}',
  'data "" (Pysher)': '{"event":"pusher:ping","data":""}',
  'data null': '{"event":"pusher:ping","data":null}',
  'no data key': '{"event":"pusher:ping"}',
};

for (const [label, frame] of Object.entries(pings)) {
  test(`pusher:ping with ${label} is answered by pusher:pong without a channel key`, async () => {
    const r = await Raw.connect(srv);
    r.send(frame);
    const pong = await r.event('pusher:pong', undefined, 2000);
    assert.ok(!('channel' in pong.json), `pong must not carry a channel key: ${pong.text}`);
    if ('data' in pong.json) {
      assert.ok(['{}', ''].includes(pong.json.data) || JSON.stringify(pong.json.data) === '{}',
        `unexpected pong data: ${pong.text}`);
    }
  });
}

test('a ping sent before reading connection_established (Pysher) still gets a pong after it', async () => {
  const r = new Raw(Raw.url(srv, 'app-key', 'client=Pysher&version=1.0.7&protocol=6'));
  await r.opened;
  r.send('{"event":"pusher:ping","data":""}');
  await r.event('pusher:pong', undefined, 2000);
  assert.equal(r.frames[0].json.event, 'pusher:connection_established');
});

test('unknown pusher:* events, unsubscribe of a channel never joined and junk frames keep the socket usable', async () => {
  const r = await Raw.connect(srv);
  r.send({ event: 'pusher:does_not_exist', data: {} });
  r.send({ event: 'pusher:unsubscribe', data: { channel: uniq('never-joined-') } });
  r.send({ event: 'pusher:unsubscribe', data: { channel: uniq('never-joined-') } });
  await r.ping();
  await r.none((j) => j.event === 'pusher:error', 0);
  // The socket still works for real traffic.
  const ch = uniq('still-alive-');
  await r.subscribe(ch, { auth: '' });
  await sdk(srv).trigger(ch, 'e', 'x');
  const ev = await r.event('e', ch);
  assert.equal(ev.json.data, 'x');
});

test('unsubscribing twice from a joined channel is a silent no-op', async () => {
  const r = await Raw.connect(srv);
  const ch = uniq('twice-');
  await r.subscribe(ch, { auth: '' });
  r.send({ event: 'pusher:unsubscribe', data: { channel: ch } });
  r.send({ event: 'pusher:unsubscribe', data: { channel: ch } });
  await r.ping();
  await r.none((j) => j.event !== 'pusher:pong', 300);
});

test('a WebSocket-level ping control frame is answered with a pong control frame', async () => {
  const r = await Raw.connect(srv);
  const pong = new Promise((resolve) => r.ws.once('pong', (d) => resolve(d.toString())));
  r.ws.ping('herald');
  assert.equal(await Promise.race([pong, new Promise((res) => setTimeout(() => res('timeout'), 2000))]), 'herald');
});
