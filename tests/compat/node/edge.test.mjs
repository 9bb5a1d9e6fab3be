// Protection at the edge as the official clients see it: pusher-js refused by the per-IP
// connection rate (4301: it stops), by a full node (4100: it backs off and gets in once a
// slot frees), and the npm SDK answered 429 by an app's event rate and daily quota.
import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import {
  APPS, CONFIG, Raw, closeAll, jsClient, nextError, sdk, sleep, startServer, statusOf,
  uniq, waitState,
} from './harness.mjs';

afterEach(closeAll);

/** CONFIG with `settings` added to [server] and `apps` appended. */
async function serverWith(settings, apps = '') {
  const config = CONFIG.replace('[server]\n', `[server]\n${settings}\n`) + apps;
  return startServer({ config });
}

test('over the per-IP connection rate: 4301, and pusher-js does not retry', async () => {
  const srv = await serverWith('max_connections_per_second_per_ip = 1');
  try {
    await Raw.connect(srv);
    const c = jsClient(srv);
    const e = await nextError(c, (x) => x.data?.code === 4301 || x.error?.data?.code === 4301, 5000);
    assert.ok(e, 'pusher-js surfaces 4301');
    await waitState(c, 'disconnected', 3000);
    const states = [];
    c.connection.bind('state_change', (s) => states.push(s.current));
    await sleep(1500);
    assert.deepEqual(states, [], 'a 43xx close makes pusher-js give up');
  } finally {
    await srv.stop();
  }
});

test('a full node (max_connections): 4100, pusher-js backs off and connects once a slot frees', async () => {
  const srv = await serverWith('max_connections = 1');
  try {
    const first = await Raw.connect(srv);
    const c = jsClient(srv);
    const e = await nextError(c, (x) => x.data?.code === 4100 || x.error?.data?.code === 4100, 5000);
    assert.ok(e, 'pusher-js surfaces 4100');
    const ready = await fetch(`http://${srv.host}:${srv.port}/ready`);
    assert.equal(ready.status, 503);
    assert.equal((await ready.json()).reason, 'over capacity: max_connections reached');
    first.disconnect();
    await first.closed;
    await waitState(c, 'connected', 8000);
    assert.equal((await fetch(`http://${srv.host}:${srv.port}/ready`)).status, 503, 'full again');
  } finally {
    await srv.stop();
  }
});

const LIMITED = `
[[apps]]
id = "5"
key = "limited-key"
secret = "secret-5"
[apps.limits]
max_api_events_per_second = 1
max_messages_per_day = 3
`;
const LIMITED_APP = { id: '5', key: 'limited-key', secret: 'secret-5' };

test('the npm SDK gets 429 from an app\'s event rate and daily quota; other apps are unaffected', async () => {
  const srv = await serverWith('', LIMITED);
  try {
    const limited = sdk(srv, LIMITED_APP);
    const channel = uniq('quota-');
    await limited.trigger(channel, 'e', {});
    const rated = await limited.trigger(channel, 'e', {}).catch((error) => error);
    assert.equal(rated.status, 429);
    assert.match(rated.body, /max_api_events_per_second/);
    for (let n = 0; n < 2; n += 1) {
      await sleep(1100);
      await limited.trigger(channel, 'e', {});
    }
    // Three messages today: the quota is used up until midnight UTC.
    await sleep(1100);
    const spent = await limited.trigger(channel, 'e', {}).catch((error) => error);
    assert.equal(spent.status, 429);
    assert.match(spent.body, /max_messages_per_day/);
    // (The SDK's error does not expose Retry-After; the Rust tests check its value.)
    assert.equal(await statusOf(sdk(srv, APPS.main).trigger(channel, 'e', {})), 'resolved with 200');
  } finally {
    await srv.stop();
  }
});
