// Graceful shutdown (spec §1.2 #9, §1.4): SIGTERM asks clients to reconnect (4200-4299).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Raw, startServer, sleep, closeAll } from './harness.mjs';

test('on SIGTERM connected clients are closed with a reconnect code (4200-4299)', async () => {
  const srv = await startServer();
  const r = await Raw.connect(srv);
  const stopping = srv.stop({ keepClients: true });
  const closed = await Promise.race([r.closed, sleep(5000).then(() => ({ code: 'not closed' }))]);
  await stopping;
  await closeAll();
  assert.ok(closed.code >= 4200 && closed.code <= 4299, `close code ${closed.code}`);
  const err = r.frames.find((f) => f.json?.event === 'pusher:error');
  if (err) assert.equal(err.json.data.code, closed.code, 'error frame code must match the close code');
});
