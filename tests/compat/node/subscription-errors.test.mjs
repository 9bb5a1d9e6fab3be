// Refused subscriptions as pusher-js sees them (spec §3.5): Pusher's connection-level
// pusher:error by default; with `subscription_error_events = true`, also the channel-scoped
// pusher:subscription_error that channel.bind(...) and Laravel Echo's .error() hear.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { APPS, CONFIG, startServer, closeAll, connectedClient, nextError, sleep } from './harness.mjs';

const ECHO = { id: '7', key: 'echo-key', secret: 's7' };
const WRONG_SECRET = { ...ECHO, secret: 'not-the-secret' };

let srv;
before(async () => {
  srv = await startServer({
    config: `${CONFIG}
[[apps]]
id = "7"
key = "echo-key"
secret = "s7"
subscription_error_events = true
`,
  });
});
after(async () => { await closeAll(); await srv.stop(); });

test('with subscription_error_events, a bad signature reaches channel.bind("pusher:subscription_error")', async () => {
  const client = await connectedClient(srv, { app: WRONG_SECRET });
  const channel = client.subscribe('private-orders');
  const error = await new Promise((resolve, reject) => {
    channel.bind('pusher:subscription_error', resolve);
    channel.bind('pusher:subscription_succeeded', () => reject(new Error('subscribed with a bad signature')));
    setTimeout(() => reject(new Error('no pusher:subscription_error')), 3000);
  });
  assert.equal(error.type, 'AuthError');
  assert.equal(error.status, 401);
  assert.match(error.error, /^Invalid signature/);
  assert.equal(channel.subscribed, false);
  const connectionError = await nextError(client, (e) => e?.data?.message?.startsWith('Invalid signature'));
  assert.equal(connectionError.data.code, null, 'the Pusher form is still sent');
  assert.equal(client.connection.state, 'connected');
});

test('by default only the Pusher form is sent', async () => {
  const client = await connectedClient(srv, { app: { ...APPS.main, secret: 'not-the-secret' } });
  const channel = client.subscribe('private-orders');
  let scoped = false;
  channel.bind('pusher:subscription_error', () => { scoped = true; });
  const connectionError = await nextError(client, (e) => e?.data?.message?.startsWith('Invalid signature'));
  assert.equal(connectionError.data.code, null);
  await sleep(300);
  assert.equal(scoped, false);
});
