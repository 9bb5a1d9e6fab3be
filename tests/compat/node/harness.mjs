// Test harness: start a real herald process, make pusher-js / raw ws / SDK clients,
// and wait for things with timeouts so a missing frame fails instead of hanging.
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import PusherJS from 'pusher-js';
import PusherServer from 'pusher';

export { PusherJS, PusherServer, WebSocket };

export const APPS = {
  main: { id: '1', key: 'app-key', secret: 'app-secret' },
  noClientEvents: { id: '2', key: 'app-key-2', secret: 'secret-2' },
  disabled: { id: '3', key: 'disabled-key', secret: 's3' },
  tiny: { id: '4', key: 'tiny-key', secret: 's4' },
};
export const ACTIVITY_TIMEOUT = 120;
export const SOCKET_ID_RE = /^\d+\.\d+$/;
export const MASTER_KEY_B64 = Buffer.alloc(32, 7).toString('base64');

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO_ROOT = path.resolve(HERE, '..', '..', '..');
export const HERALD_BIN = process.env.HERALD_BIN || path.join(REPO_ROOT, 'target', 'debug', 'herald');

/** The four standard apps; tests needing more append [[apps]] / [webhooks] blocks. */
export const CONFIG = `[server]
host = "127.0.0.1"
port = 6001
activity_timeout = ${ACTIVITY_TIMEOUT}

[[apps]]
id = "1"
key = "app-key"
secret = "app-secret"
enable_client_messages = true
enabled = true
max_connections = 0

[[apps]]
id = "2"
key = "app-key-2"
secret = "secret-2"
enable_client_messages = false
enabled = true
max_connections = 0

[[apps]]
id = "3"
key = "disabled-key"
secret = "s3"
enable_client_messages = true
enabled = false
max_connections = 0

[[apps]]
id = "4"
key = "tiny-key"
secret = "s4"
enable_client_messages = true
enabled = true
max_connections = 1
`;

// ---------------------------------------------------------------- timing helpers

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function within(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Poll `cond` every 20 ms until true; throw after ms. */
export async function until(cond, what, ms = 3000) {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(20);
  }
}

let counter = 0;
/** A channel name no other test uses. */
export function uniq(prefix) {
  counter += 1;
  return `${prefix}${process.pid}-${counter}-${crypto.randomBytes(3).toString('hex')}`;
}

// ---------------------------------------------------------------- server process

/** Start herald on port 0 with `config` (TOML text; default CONFIG). */
export async function startServer({ config = CONFIG } = {}) {
  const dir = mkdtempSync(path.join(tmpdir(), 'herald-compat-'));
  const cfg = path.join(dir, 'herald.toml');
  writeFileSync(cfg, config);
  const child = spawn(HERALD_BIN, ['serve', '--config', cfg, '--port', '0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stderr.on('data', (d) => { err = (err + d).slice(-20000); });
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`herald printed no listening line in 10 s\nstdout: ${out}\nstderr: ${err}`));
    }, 10000);
    child.stdout.on('data', (d) => {
      out = (out + d).slice(-20000);
      const m = /listening on ([0-9.]+):(\d+)/.exec(out);
      if (m) { clearTimeout(timer); resolve(Number(m[2])); }
    });
    child.on('error', (e) => { clearTimeout(timer); reject(e); });
    child.on('exit', (code, sig) => {
      clearTimeout(timer);
      reject(new Error(`herald exited early (code ${code}, signal ${sig})\nstdout: ${out}\nstderr: ${err}`));
    });
  });
  const exited = new Promise((r) => child.once('exit', r));
  return {
    host: '127.0.0.1',
    port,
    stderr: () => err,
    configPath: cfg,
    /** SIGTERM the server; clients are closed first unless keepClients. */
    async stop({ keepClients = false } = {}) {
      if (!keepClients) await closeAll();
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(t);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// Every client made through this module is closed by closeAll() (call it in afterEach).
const open = new Set();
export async function closeAll() {
  for (const c of open) {
    try { c.disconnect ? c.disconnect() : c.terminate(); } catch { /* already gone */ }
  }
  open.clear();
  await sleep(20);
}

// ---------------------------------------------------------------- server SDK

export function sdk(srv, app = APPS.main, extra = {}) {
  return new PusherServer({
    appId: app.id, key: app.key, secret: app.secret,
    host: srv.host, port: srv.port, useTLS: false, timeout: 5000, ...extra,
  });
}

/** Await an SDK call expected to fail; return its HTTP status. */
export async function statusOf(promise) {
  try {
    const res = await promise;
    return `resolved with ${res.status}`;
  } catch (e) {
    if (e.status === undefined) throw e;
    return e.status;
  }
}

/** Raw signed HTTP request (for what the SDK cannot produce: stale time, bad body, wrong md5). */
export async function signedFetch(srv, {
  method = 'POST', path: p, body, md5Of = body, app = APPS.main, timestamp, params = {},
}) {
  const q = {
    auth_key: app.key,
    auth_timestamp: String(timestamp ?? Math.floor(Date.now() / 1000)),
    auth_version: '1.0',
    ...params,
  };
  if (md5Of !== undefined) q.body_md5 = crypto.createHash('md5').update(md5Of).digest('hex');
  const canonical = Object.keys(q).sort().map((k) => `${k}=${q[k]}`).join('&');
  const sig = crypto.createHmac('sha256', app.secret).update(`${method}\n${p}\n${canonical}`).digest('hex');
  const url = `http://${srv.host}:${srv.port}${p}?${canonical}&auth_signature=${sig}`;
  const res = await fetch(url, {
    method, body, headers: body !== undefined ? { 'content-type': 'application/json' } : {},
  });
  return { status: res.status, text: await res.text() };
}

export function hmac(secret, s) {
  return crypto.createHmac('sha256', secret).update(s).digest('hex');
}

// ---------------------------------------------------------------- pusher-js

/**
 * A pusher-js client against the test server. Private/presence channels are
 * authorized in-process with the npm SDK's authorizeChannel (no auth HTTP server).
 * `user` is the presence channel_data ({user_id, user_info}); without it presence auth
 * has no channel_data. `signinAs` is the user data that `pusher.signin()` sends, signed
 * with the npm SDK's authenticateUser (or `userAuth`, a custom user-auth handler).
 */
export function jsClient(srv, { app = APPS.main, user, masterKey, signinAs, userAuth } = {}) {
  const signer = sdk(srv, app, masterKey ? { encryptionMasterKeyBase64: masterKey } : {});
  const client = new PusherJS(app.key, {
    userAuthentication: {
      customHandler: userAuth || (({ socketId }, cb) => {
        try { cb(null, signer.authenticateUser(socketId, signinAs)); } catch (e) { cb(e, null); }
      }),
    },
    cluster: 'mt1',
    wsHost: srv.host, wsPort: srv.port, wssPort: srv.port,
    forceTLS: false, enabledTransports: ['ws'], disableStats: true,
    channelAuthorization: {
      customHandler: ({ socketId, channelName }, cb) => {
        try {
          const data = channelName.startsWith('presence-') ? user : undefined;
          cb(null, signer.authorizeChannel(socketId, channelName, data));
        } catch (e) { cb(e, null); }
      },
    },
  });
  client.messages = [];
  client.errors = [];
  // pusher-js reacts to a 4000-4099 close ('refused') by calling close() on the already
  // closed faye-websocket socket, which arms a 30 s timer nothing clears; unref it so a
  // test file that closes pusher-js with 4009 does not keep node alive for 30 s.
  client.connection.bind('connected', () => {
    const sock = client.connection.connection?.transport?.socket;
    if (!sock || sock.heraldPatched || typeof sock.close !== 'function') return;
    const close = sock.close;
    sock.close = function patchedClose(...args) {
      const r = close.apply(this, args);
      this._closeTimer?.unref?.();
      return r;
    };
    sock.heraldPatched = true;
  });
  client.connection.bind('message', (m) => client.messages.push(m));
  client.connection.bind('error', (e) => client.errors.push(e));
  open.add(client);
  return client;
}

export function waitState(client, state, ms = 5000) {
  if (client.connection.state === state) return Promise.resolve();
  return within(new Promise((resolve) => {
    const cb = (s) => { if (s.current === state) { client.connection.unbind('state_change', cb); resolve(); } };
    client.connection.bind('state_change', cb);
  }), ms, `pusher-js state '${state}' (now '${client.connection.state}')`);
}

export async function connectedClient(srv, opts) {
  const c = jsClient(srv, opts);
  await waitState(c, 'connected');
  return c;
}

/** Subscribe with pusher-js and wait for pusher:subscription_succeeded. */
export function subscribe(client, name, ms = 4000) {
  const ch = client.subscribe(name);
  return within(new Promise((resolve, reject) => {
    ch.bind('pusher:subscription_succeeded', () => resolve(ch));
    ch.bind('pusher:subscription_error', (e) => reject(new Error(`subscription_error on ${name}: ${JSON.stringify(e)}`)));
  }), ms, `subscription_succeeded on ${name}`);
}

/** Next `event` on a pusher-js channel: resolves {data, metadata}. */
export function nextEvent(channel, event, ms = 3000) {
  return within(new Promise((resolve) => {
    const cb = (data, metadata) => { channel.unbind(event, cb); resolve({ data, metadata }); };
    channel.bind(event, cb);
  }), ms, `event ${event} on ${channel.name}`);
}

/** Collect every `event` on a pusher-js channel into an array. */
export function collect(channel, event) {
  const got = [];
  channel.bind(event, (data, metadata) => got.push({ data, metadata }));
  return got;
}

/** Next connection-level error emitted by pusher-js that matches `pred`. */
export function nextError(client, pred, ms = 3000) {
  const found = client.errors.find(pred);
  if (found) return Promise.resolve(found);
  return within(new Promise((resolve) => {
    const cb = (e) => { if (pred(e)) { client.connection.unbind('error', cb); resolve(e); } };
    client.connection.bind('error', cb);
  }), ms, 'pusher-js error event');
}

// ---------------------------------------------------------------- raw WebSocket

/**
 * A raw ws client that records every text frame. `take(pred)` returns the first
 * not-yet-taken frame matching pred (waiting for it), so tests read frames in order.
 */
export class Raw {
  constructor(url) {
    this.frames = [];
    this.waiters = [];
    this.ws = new WebSocket(url);
    open.add(this.ws);
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', resolve);
      this.ws.once('error', reject);
    });
    this.ws.on('error', () => { /* surfaced through `closed` */ });
    this.closed = new Promise((resolve) => {
      this.ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() }));
    });
    this.ws.on('message', (buf, isBinary) => {
      const text = buf.toString('utf8');
      let json;
      try { json = JSON.parse(text); } catch { json = undefined; }
      this.frames.push({ text, json, isBinary, taken: false });
      this.waiters.forEach((w) => w());
    });
  }

  static url(srv, key = APPS.main.key, query = 'protocol=7&client=js&version=8.6.0&flash=false') {
    return `ws://${srv.host}:${srv.port}/app/${key}${query === null ? '' : `?${query}`}`;
  }

  /** Open, wait for connection_established, and remember the socket id. */
  static async connect(srv, key = APPS.main.key, query) {
    const r = new Raw(Raw.url(srv, key, query));
    const f = await r.take((j) => j.event === 'pusher:connection_established');
    r.socketId = JSON.parse(f.json.data).socket_id;
    return r;
  }

  send(obj) { this.ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj)); }

  take(pred = () => true, ms = 3000, what = 'a matching frame') {
    const find = () => this.frames.find((f) => !f.taken && f.json && pred(f.json, f.text));
    return within(new Promise((resolve) => {
      const check = () => {
        const f = find();
        if (f) {
          f.taken = true;
          this.waiters = this.waiters.filter((w) => w !== check);
          resolve(f);
        }
      };
      this.waiters.push(check);
      check();
    }), ms, what);
  }

  /** Assert that no untaken frame matching pred arrives within ms. */
  async none(pred, ms = 500) {
    await sleep(ms);
    const f = this.frames.find((x) => !x.taken && x.json && pred(x.json, x.text));
    if (f) throw new Error(`unexpected frame: ${f.text}`);
  }

  event(name, channel, ms) {
    return this.take((j) => j.event === name && (channel === undefined || j.channel === channel),
      ms, `frame ${name}${channel ? ` on ${channel}` : ''}`);
  }

  error(ms) { return this.event('pusher:error', undefined, ms); }

  /** Subscribe (auth computed locally when `secret` given) and wait for the success frame. */
  async subscribe(channel, { auth, channelData, secret, key = APPS.main.key } = {}) {
    const data = { channel };
    if (auth !== undefined) data.auth = auth;
    if (secret) {
      const parts = [this.socketId, channel];
      if (channelData !== undefined) parts.push(channelData);
      data.auth = `${key}:${hmac(secret, parts.join(':'))}`;
    }
    if (channelData !== undefined) data.channel_data = channelData;
    this.send({ event: 'pusher:subscribe', data });
    return this.event('pusher_internal:subscription_succeeded', channel);
  }

  /** Send pusher:signin for `userData` (an object, or the exact JSON string) signed with `secret`. */
  signin(userData, { secret = APPS.main.secret, key = APPS.main.key, auth } = {}) {
    const text = typeof userData === 'string' ? userData : JSON.stringify(userData);
    const a = auth ?? `${key}:${hmac(secret, `${this.socketId}::user::${text}`)}`;
    this.send({ event: 'pusher:signin', data: { auth: a, user_data: text } });
    return text;
  }

  /** Round-trip a ping to prove the connection is still open and answering. */
  async ping() {
    this.send({ event: 'pusher:ping', data: {} });
    return this.event('pusher:pong', undefined, 2000);
  }

  disconnect() { this.ws.terminate(); }
}
