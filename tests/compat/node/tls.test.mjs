// TLS on the main port ([server.tls]): pusher-js with forceTLS (wss://) and the npm SDK with
// useTLS (https://), trusting a CA this file makes with the openssl CLI; the certificate is
// renewed while pusher-js stays connected, and new handshakes get the new serial number.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import https from 'node:https';
import path from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { APPS, CONFIG, PusherServer, startServer, uniq, until, within } from './harness.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const dir = mkdtempSync(path.join(tmpdir(), 'herald-compat-tls-'));
const file = (name) => path.join(dir, name);
const openssl = (...args) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });

/** A CA (ca.crt) and a server certificate for 127.0.0.1 with `serial`, renamed into place. */
function issue(serial) {
  openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', file('next.key'), '-out', file('next.csr'), '-subj', '/CN=herald');
  openssl('x509', '-req', '-in', file('next.csr'), '-CA', file('ca.crt'), '-CAkey', file('ca.key'),
    '-set_serial', String(serial), '-days', '2', '-out', file('next.crt'), '-extfile', file('ext.cnf'));
  renameSync(file('next.key'), file('server.key'));
  renameSync(file('next.crt'), file('server.crt'));
}

let srv;
let ca;
before(async () => {
  openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', file('ca.key'), '-out', file('ca.crt'), '-days', '2', '-subj', '/CN=Herald compat CA');
  writeFileSync(file('ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  ca = readFileSync(file('ca.crt'));
  issue(1);
  const section = `[server.tls]\ncert = "${file('server.crt')}"\nkey = "${file('server.key')}"\nwatch_interval = 1\n\n`;
  srv = await startServer({ config: CONFIG.replace('[[apps]]', `${section}[[apps]]`) });
});
after(async () => {
  await srv?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** The npm SDK over https://, trusting the test CA through its `agent` option. */
function tlsSdk() {
  return new PusherServer({
    appId: APPS.main.id, key: APPS.main.key, secret: APPS.main.secret,
    host: srv.host, port: srv.port, useTLS: true, timeout: 5000,
    agent: new https.Agent({ ca }),
  });
}

/** pusher-js with forceTLS in a child process; `next(pred)` waits for one of its lines. */
function wssClient(channel) {
  const child = spawn(process.execPath, [path.join(HERE, 'tls-client.mjs'), String(srv.port), channel], {
    env: { ...process.env, NODE_EXTRA_CA_CERTS: file('ca.crt') },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = [];
  let buffer = '';
  child.stdout.on('data', (chunk) => {
    buffer += chunk;
    let end;
    while ((end = buffer.indexOf('\n')) >= 0) {
      lines.push(JSON.parse(buffer.slice(0, end)));
      buffer = buffer.slice(end + 1);
    }
  });
  return {
    lines,
    next: async (pred, what) => {
      await until(() => lines.some(pred), `${what}; got ${JSON.stringify(lines)}`, 8000);
      return lines.find(pred);
    },
    stop: () => { child.stdin.end(); child.kill(); },
  };
}

/** The serial number a new TLS handshake with the server presents. */
function presentedSerial() {
  return within(new Promise((resolve, reject) => {
    const socket = tls.connect({ host: srv.host, port: srv.port, ca, servername: 'localhost' }, () => {
      resolve(socket.getPeerCertificate().serialNumber);
      socket.end();
    });
    socket.on('error', reject);
  }), 3000, 'TLS handshake');
}

test('pusher-js with forceTLS gets over wss:// an event the npm SDK triggers over https://', async () => {
  const channel = uniq('tls-');
  const client = wssClient(channel);
  try {
    const connected = await client.next((l) => l.state === 'connected', 'connected');
    assert.equal(connected.serial, '01');
    await client.next((l) => l.subscribed === channel, 'subscribed');
    const sdk = tlsSdk();
    await sdk.trigger(channel, 'over-tls', { secure: true });
    const got = await client.next((l) => l.event === 'over-tls', 'the event');
    assert.deepEqual(got.data, { secure: true });
    const info = await (await sdk.get({ path: `/channels/${channel}`, params: {} })).json();
    assert.equal(info.occupied, true);
  } finally {
    client.stop();
  }
});

test('a renewed certificate: pusher-js stays connected, new handshakes get the new serial', async () => {
  const channel = uniq('renew-');
  const client = wssClient(channel);
  try {
    await client.next((l) => l.state === 'connected', 'connected');
    await client.next((l) => l.subscribed === channel, 'subscribed');
    assert.equal(await presentedSerial(), '01');
    issue(2);
    const deadline = Date.now() + 5000;
    let serial = await presentedSerial();
    while (serial !== '02' && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      serial = await presentedSerial();
    }
    assert.equal(serial, '02', 'new handshakes use the renewed certificate');
    await tlsSdk().trigger(channel, 'after-renewal', { n: 2 });
    const got = await client.next((l) => l.event === 'after-renewal', 'the event after renewal');
    assert.deepEqual(got.data, { n: 2 });
    // ('connecting' is emitted inside the constructor, before anything can bind.)
    const states = client.lines.filter((l) => l.state).map((l) => l.state);
    assert.deepEqual(states, ['connected'], 'the connection was never dropped');
  } finally {
    client.stop();
  }
});
