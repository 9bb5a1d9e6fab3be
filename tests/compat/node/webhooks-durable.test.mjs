// Webhook durability (spec §9.3 + Herald's outbox): pending webhooks survive a restart with
// the same data_dir; after retry_for they are dead-lettered, listed and replayed by the CLI.
import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import {
  CONFIG, HERALD_BIN, Raw, startServer, closeAll, uniq, sleep,
} from './harness.mjs';
import { Sink, webhookToml } from './webhook-sink.mjs';

const HOOK = { id: '5', key: 'hook-key', secret: 'hook-secret' };
const run = promisify(execFile);

const cleanup = [];
afterEach(async () => {
  await closeAll();
  while (cleanup.length) await cleanup.pop()();
});

function config(sink, dataDir, retryFor) {
  return `${CONFIG}
[webhooks]
data_dir = "${dataDir}"
removal_delay_ms = 300
retry_for = ${retryFor}
timeout = 10

[[apps]]
id = "5"
key = "hook-key"
secret = "hook-secret"
${webhookToml(sink, { types: ['channel_occupied'] })}`;
}

async function setup(retryFor) {
  const sink = await new Sink(HOOK).listen();
  const dataDir = mkdtempSync(path.join(tmpdir(), 'herald-compat-whd-'));
  cleanup.push(async () => { await sink.close(); rmSync(dataDir, { recursive: true, force: true }); });
  return { sink, dataDir, cfg: config(sink, dataDir, retryFor) };
}

async function server(cfg) {
  const srv = await startServer({ config: cfg });
  let stopped = false;
  cleanup.push(async () => { if (!stopped) await srv.stop(); });
  return { srv, stop: async () => { stopped = true; await srv.stop(); } };
}

const attemptsFor = (sink, name) => sink.requests
  .filter((q) => q.body?.events?.some((e) => e.channel === name))
  .map((q) => ({ q, ev: q.body.events.find((e) => e.channel === name) }));

async function cli(srv, ...args) {
  const { stdout } = await run(HERALD_BIN, ['webhooks', ...args, '--config', srv.configPath], { timeout: 5000 });
  return stdout;
}

test('pending webhooks survive a restart with the same data_dir (same event and id)', async () => {
  const { sink, cfg } = await setup(300);
  sink.down = true;
  const first = await server(cfg);
  const names = [uniq('whd-a-'), uniq('whd-b-'), uniq('whd-c-')];
  const r = await Raw.connect(first.srv, HOOK.key);
  for (const n of names) await r.subscribe(n);
  await sink.until(() => names.every((n) => attemptsFor(sink, n).length >= 1), 5000, 'a failed attempt per channel');
  const before = Object.fromEntries(names.map((n) => [n, attemptsFor(sink, n)[0]]));
  for (const n of names) assert.equal(before[n].q.status, 503);

  await first.stop(); // SIGTERM
  sink.down = false;
  const second = await server(cfg);
  assert.ok(second.srv.port > 0);
  await sink.until(() => names.every((n) => sink.on(n).length >= 1), 10000, 'delivery after restart');
  for (const n of names) {
    const delivered = attemptsFor(sink, n).filter((x) => x.q.status === 200);
    assert.equal(delivered.length, 1, `${n} delivered once`);
    assert.equal(delivered[0].ev.id, before[n].ev.id, 'same event id after the restart');
    assert.deepEqual(delivered[0].ev, before[n].ev);
  }
  sink.assertAllValid();
});

test('after retry_for the event is dead-lettered; list-failed shows it; replay --all delivers it', async () => {
  const { sink, cfg } = await setup(2);
  sink.down = true;
  const { srv } = await server(cfg);
  const name = uniq('whd-dead-');
  const r = await Raw.connect(srv, HOOK.key);
  await r.subscribe(name);
  await sink.until(() => attemptsFor(sink, name).length >= 1, 5000, 'first attempt');
  const id = attemptsFor(sink, name)[0].ev.id;

  // Poll the CLI until the event is listed as dead (retry_for = 2 s).
  let listed = '';
  const deadline = Date.now() + 8000;
  while (!listed.includes(id)) {
    if (Date.now() > deadline) throw new Error(`event ${id} not dead-lettered within 8 s; list-failed: ${listed}`);
    await sleep(300);
    listed = await cli(srv, 'list-failed');
  }
  assert.match(listed, /\b1 dead-lettered webhook event/);
  const tries = attemptsFor(sink, name).length;
  assert.ok(tries >= 2 && tries <= 4, `${tries} attempts within retry_for = 2 s (expected ~1 s backoff steps)`);
  await sleep(1500);
  assert.equal(attemptsFor(sink, name).length, tries, 'no attempts after dead-lettering');

  sink.down = false;
  await cli(srv, 'replay', '--all');
  const ev = await sink.event((e) => e.channel === name, 8000, 'replayed webhook');
  assert.equal(ev.id, id, 'replay keeps the event id');
  assert.deepEqual(Object.keys(ev).sort(), ['channel', 'id', 'name']);
  let after = await cli(srv, 'list-failed');
  const until2 = Date.now() + 3000;
  while (after.includes(id) && Date.now() < until2) { await sleep(200); after = await cli(srv, 'list-failed'); }
  assert.ok(!after.includes(id), `still listed after replay: ${after}`);
  assert.match(after, /\b0 dead-lettered webhook event/);
  sink.assertAllValid();
});

test('replay of a single id (list-failed id) delivers just that event', async () => {
  const { sink, cfg } = await setup(1);
  sink.down = true;
  const { srv } = await server(cfg);
  const names = [uniq('whd-one-'), uniq('whd-two-')];
  const r = await Raw.connect(srv, HOOK.key);
  for (const n of names) await r.subscribe(n);
  await sink.until(() => names.every((n) => attemptsFor(sink, n).length >= 1), 5000, 'attempts');
  const ids = names.map((n) => attemptsFor(sink, n)[0].ev.id);
  let listed = '';
  const deadline = Date.now() + 8000;
  while (!ids.every((i) => listed.includes(i))) {
    if (Date.now() > deadline) throw new Error(`not dead-lettered within 8 s; list-failed: ${listed}`);
    await sleep(300);
    listed = await cli(srv, 'list-failed');
  }
  sink.down = false;
  await cli(srv, 'replay', ids[0]);
  await sink.event((e) => e.channel === names[0], 8000, 'replayed webhook');
  await sleep(1000);
  assert.equal(sink.on(names[1]).length, 0, 'the other dead letter stays dead');
  assert.ok((await cli(srv, 'list-failed')).includes(ids[1]));
  sink.assertAllValid();
});
