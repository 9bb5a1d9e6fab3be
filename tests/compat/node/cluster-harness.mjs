// Cluster harness: a private Redis or NATS process on a free port, three `herald serve`
// processes joined through it (one config file each), an HTTP auth endpoint for pusher-js,
// and pusher-js / npm SDK clients bound to a chosen node. Everything waits with deadlines.
import { spawn } from 'node:child_process';
import {
  mkdtempSync, mkdirSync, writeFileSync, rmSync, createWriteStream,
} from 'node:fs';
import { tmpdir } from 'node:os';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import crypto from 'node:crypto';
import {
  APPS, CONFIG, HERALD_BIN, PusherJS, PusherServer, sleep, within,
} from './harness.mjs';

export const HEARTBEAT_S = 1;
export const NODE_TIMEOUT_S = 3;
export const REMOVAL_DELAY_MS = 3000;
export const NATS_SERVER = process.env.NATS_SERVER || '/usr/sbin/nats-server';
export const REDIS_SERVER = process.env.REDIS_SERVER || 'redis-server';

// Children are SIGKILLed if this process exits without cleaning up (a crashed test file
// must not leave brokers or nodes behind).
const children = new Set();
process.on('exit', () => { for (const c of children) { try { c.kill('SIGKILL'); } catch { /* gone */ } } });

function track(child) {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** A TCP port nobody listens on right now. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function accepts(port) {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    sock.once('connect', () => { sock.destroy(); resolve(true); });
    sock.once('error', () => resolve(false));
  });
}

/** Poll `check` (async, returns truthy when done) every `every` ms until `ms` pass. */
export async function poll(check, what, ms = 10000, every = 50) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    last = await check();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(every);
  }
}

// ---------------------------------------------------------------- broker

/** A private `redis-server` or `nats-server` on a free port, stoppable and restartable. */
export class Broker {
  constructor(kind, dir) {
    this.kind = kind;
    this.dir = dir;
    this.child = null;
  }

  static async start(kind, dir) {
    const broker = new Broker(kind, dir);
    broker.port = await freePort();
    await broker.start();
    return broker;
  }

  get url() { return `${this.kind}://127.0.0.1:${this.port}`; }

  get running() { return this.child !== null; }

  /** Starts the process (again, on the same port) and waits until it accepts connections. */
  async start() {
    const [bin, args] = this.kind === 'redis'
      ? [REDIS_SERVER, ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '',
        '--appendonly', 'no', '--dir', this.dir]]
      : [NATS_SERVER, ['-a', '127.0.0.1', '-p', String(this.port)]];
    const child = track(spawn(bin, args, { stdio: 'ignore' }));
    child.once('error', () => {});
    this.child = child;
    this.exited = new Promise((r) => child.once('exit', r));
    await poll(() => accepts(this.port), `${this.kind} on port ${this.port}`, 10000, 20);
  }

  /** SIGKILL: an outage, not a graceful stop. */
  async stop() {
    if (!this.child) return;
    this.child.kill('SIGKILL');
    await this.exited;
    this.child = null;
  }
}

// ---------------------------------------------------------------- nodes

const keepAlive = new http.Agent({ keepAlive: true });

/** One `herald serve` process of the cluster. Its port changes on every start. */
export class ClusterNode {
  constructor(cluster, index) {
    this.cluster = cluster;
    this.index = index;
    this.id = `node-${index}`;
    this.host = '127.0.0.1';
    this.child = null;
    this.dir = path.join(cluster.dir, this.id);
    this.starts = 0;
  }

  get running() { return this.child !== null; }

  config() {
    const c = this.cluster;
    const url = c.kind === 'redis' ? `redis_url = "${c.broker.url}"` : `nats_url = "${c.broker.url}"`;
    return `${CONFIG}${c.appsToml}
[cluster]
driver = "${c.kind}"
${url}
prefix = "${c.prefix}"
node_id = "${this.id}"
heartbeat_interval = ${HEARTBEAT_S}
node_timeout = ${NODE_TIMEOUT_S}

[webhooks]
data_dir = "${path.join(this.dir, 'data')}"
removal_delay_ms = ${REMOVAL_DELAY_MS}
`;
  }

  async start() {
    mkdirSync(this.dir, { recursive: true });
    this.starts += 1;
    const cfg = `${this.dir}.toml`;
    writeFileSync(cfg, this.config());
    const log = createWriteStream(path.join(this.cluster.dir, `${this.id}.log`), { flags: 'a' });
    log.write(`--- start ${this.starts} at ${new Date().toISOString()}\n`);
    const child = track(spawn(HERALD_BIN, ['serve', '--config', cfg, '--port', '0'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info' },
    }));
    child.stderr.pipe(log);
    let out = '';
    this.port = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`${this.id} printed no listening line in 15 s; log ${this.cluster.dir}/${this.id}.log`));
      }, 15000);
      child.stdout.on('data', (d) => {
        log.write(d);
        out = (out + d).slice(-4000);
        const m = /listening on ([0-9.]+):(\d+)/.exec(out);
        if (m) { clearTimeout(timer); resolve(Number(m[2])); }
      });
      child.once('exit', (code, sig) => {
        clearTimeout(timer);
        reject(new Error(`${this.id} exited early (code ${code}, signal ${sig}); log ${this.cluster.dir}/${this.id}.log`));
      });
    });
    this.child = child;
    this.exited = new Promise((r) => child.once('exit', (code, sig) => r({ code, sig })));
    return this;
  }

  /** kill -9: no goodbye to the cluster, sockets just close. */
  async kill() {
    if (!this.child) return;
    this.child.kill('SIGKILL');
    await this.exited;
    this.child = null;
  }

  /** SIGTERM: clients are told to reconnect (4200), the cluster is told the node leaves. */
  async term() {
    if (!this.child) return undefined;
    this.child.kill('SIGTERM');
    const t = setTimeout(() => this.child?.kill('SIGKILL'), 15000);
    const how = await this.exited;
    clearTimeout(t);
    this.child = null;
    return how;
  }

  async ready() {
    try {
      const res = await fetch(`http://${this.host}:${this.port}/ready`, { signal: AbortSignal.timeout(2000) });
      const text = await res.text();
      let json;
      try { json = JSON.parse(text); } catch { json = undefined; }
      return { status: res.status, text, json };
    } catch (e) {
      return { status: 0, text: String(e) };
    }
  }

  /** The npm `pusher` SDK pointed at this node (kept-alive connections, as servers do). */
  sdk(app = APPS.main) {
    return new PusherServer({
      appId: app.id, key: app.key, secret: app.secret,
      host: this.host, port: this.port, useTLS: false, timeout: 5000, agent: keepAlive,
    });
  }

  /** GET on the HTTP API through the SDK; resolves the JSON body. */
  async get(p, params = {}, app = APPS.main) {
    const res = await this.sdk(app).get({ path: p, params });
    return res.json();
  }
}

// ---------------------------------------------------------------- cluster

/** Three nodes on one private broker, under a prefix of their own. */
export class Cluster {
  constructor(kind, { count = 3, appsToml = '' } = {}) {
    this.kind = kind;
    this.count = count;
    this.appsToml = appsToml;
    this.prefix = `compat-${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
    this.dir = mkdtempSync(path.join(tmpdir(), `herald-cluster-${kind}-`));
    this.failed = false;
  }

  async start() {
    this.broker = await Broker.start(this.kind, this.dir);
    this.nodes = [];
    for (let i = 0; i < this.count; i += 1) this.nodes.push(new ClusterNode(this, i));
    await Promise.all(this.nodes.map((n) => n.start()));
    await this.waitReady();
    return this;
  }

  /** Waits until every running node answers /ready with 200. */
  async waitReady(ms = 20000) {
    for (const node of this.nodes.filter((n) => n.running)) {
      await poll(async () => (await node.ready()).status === 200, `${node.id} /ready = 200`, ms);
    }
  }

  /** After a scenario that stopped things: broker and every node running and ready again. */
  async heal() {
    if (!this.broker.running) await this.broker.start();
    await Promise.all(this.nodes.filter((n) => !n.running).map((n) => n.start()));
    await this.waitReady();
  }

  async stop() {
    await Promise.all(this.nodes.map((n) => n.kill()));
    await this.broker.stop();
    if (this.failed) {
      console.log(`# cluster logs kept in ${this.dir}`);
    } else {
      rmSync(this.dir, { recursive: true, force: true });
    }
  }
}

// ---------------------------------------------------------------- auth endpoint

/**
 * The application's auth endpoint for pusher-js: POST /pusher/user-auth (sign-in, with the
 * user in the `user` param) and POST /pusher/auth (channels; presence data from `user`),
 * both signed by the npm SDK for the app named by the `app` param.
 */
export class AuthEndpoint {
  async listen(apps = Object.values(APPS)) {
    this.signers = new Map(apps.map((a) => [a.id, new PusherServer({ appId: a.id, key: a.key, secret: a.secret })]));
    this.requests = 0;
    this.server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (d) => { body += d; });
      req.on('end', () => {
        this.requests += 1;
        const q = new URLSearchParams(body);
        const signer = this.signers.get(q.get('app') ?? APPS.main.id);
        const user = q.get('user') ? JSON.parse(q.get('user')) : undefined;
        let answer;
        if (req.url === '/pusher/user-auth') {
          answer = signer.authenticateUser(q.get('socket_id'), user);
        } else if (req.url === '/pusher/auth') {
          const channel = q.get('channel_name');
          answer = signer.authorizeChannel(q.get('socket_id'), channel,
            channel.startsWith('presence-') ? user : undefined);
        }
        res.writeHead(answer ? 200 : 404, { 'content-type': 'application/json' });
        res.end(answer ? JSON.stringify(answer) : '{}');
      });
    });
    await new Promise((r) => this.server.listen(0, '127.0.0.1', r));
    this.base = `http://127.0.0.1:${this.server.address().port}`;
    return this;
  }

  close() {
    this.server.closeAllConnections?.();
    return new Promise((r) => this.server.close(() => r()));
  }
}

// ---------------------------------------------------------------- pusher-js

const clients = new Set();

/**
 * A pusher-js client of `node`, authorized through `auth` (an AuthEndpoint): `member` is
 * its presence channel_data ({user_id, user_info}), `signinAs` what `pusher.signin()` signs
 * in as ({id, watchlist?}). Records every message and connection error.
 */
export function jsClient(node, auth, { app = APPS.main, member, signinAs } = {}) {
  const client = new PusherJS(app.key, {
    cluster: 'mt1',
    wsHost: node.host, wsPort: node.port, wssPort: node.port,
    forceTLS: false, enabledTransports: ['ws'], disableStats: true,
    channelAuthorization: {
      endpoint: `${auth.base}/pusher/auth`, transport: 'ajax',
      params: { app: app.id, ...(member ? { user: JSON.stringify(member) } : {}) },
    },
    userAuthentication: {
      endpoint: `${auth.base}/pusher/user-auth`, transport: 'ajax',
      params: { app: app.id, ...(signinAs ? { user: JSON.stringify(signinAs) } : {}) },
    },
  });
  client.node = node;
  client.signinAs = signinAs;
  client.member = member;
  client.messages = [];
  client.errors = [];
  client.connection.bind('message', (m) => client.messages.push(m));
  client.connection.bind('error', (e) => client.errors.push(e));
  clients.add(client);
  return client;
}

/** Disconnects every pusher-js client made here. */
export async function closeClients() {
  for (const c of clients) {
    try { c.disconnect(); } catch { /* already gone */ }
  }
  clients.clear();
  await sleep(20);
}

export function waitState(client, state, ms = 8000) {
  if (client.connection.state === state) return Promise.resolve();
  return within(new Promise((resolve) => {
    const cb = (s) => { if (s.current === state) { client.connection.unbind('state_change', cb); resolve(); } };
    client.connection.bind('state_change', cb);
  }), ms, `pusher-js state '${state}' on ${client.node.id} (now '${client.connection.state}')`);
}

export async function connected(node, auth, opts) {
  const c = jsClient(node, auth, opts);
  await waitState(c, 'connected');
  return c;
}

/** Subscribes and waits for pusher:subscription_succeeded; resolves the channel. */
export function subscribe(client, name, ms = 8000) {
  const ch = client.subscribe(name);
  return within(new Promise((resolve, reject) => {
    ch.bind('pusher:subscription_succeeded', () => resolve(ch));
    ch.bind('pusher:subscription_error', (e) => reject(new Error(`subscription_error on ${name}: ${JSON.stringify(e)}`)));
  }), ms, `subscription_succeeded on ${name} (${client.node.id})`);
}

/** Signs in (pusher-js `signin()` through the endpoint) and waits for the user channel. */
export async function signIn(client, ms = 8000) {
  const channel = `#server-to-user-${client.signinAs.id}`;
  const ok = within(new Promise((resolve) => {
    const cb = (m) => {
      if (m.event === 'pusher_internal:subscription_succeeded' && m.channel === channel) {
        client.connection.unbind('message', cb);
        resolve();
      }
    };
    client.connection.bind('message', cb);
  }), ms, `subscription_succeeded on ${channel} (${client.node.id})`);
  client.signin();
  await ok;
  return client;
}

/** Every `event` of a pusher-js channel (or user, or watchlist) as it arrives. */
export function record(bindable, event, map = (d) => d) {
  const got = [];
  bindable.bind(event, (data) => got.push(map(data)));
  return got;
}

/**
 * The user ids of the raw `pusher_internal:member_added` (`kind` 'added') or `_removed`
 * frames `client` gets on `channel` from now on. Raw frames, since pusher-js hides a second
 * member_removed of a user it already dropped.
 */
export function memberFrames(client, channel, kind) {
  const got = [];
  client.connection.bind('message', (m) => {
    if (m.event === `pusher_internal:member_${kind}` && m.channel === channel) {
      got.push((typeof m.data === 'string' ? JSON.parse(m.data) : m.data).user_id);
    }
  });
  return got;
}

/** Waits until `list` has at least `n` entries (the list keeps growing meanwhile). */
export function atLeast(list, n, what, ms = 8000) {
  return poll(() => list.length >= n, `${what} (have ${list.length}, want ${n})`, ms, 20);
}

/** Ids of a pusher-js presence channel's members, sorted. */
export function memberIds(channel) {
  const ids = [];
  channel.members.each((m) => ids.push(m.id));
  return ids.sort();
}

/** Waits until `client` was told to reconnect (pusher:error 42xx) or is no longer connected. */
export function leftNode(client, ms = 10000) {
  return poll(() => client.connection.state !== 'connected'
    || client.errors.some((e) => e.data?.code >= 4200 && e.data?.code < 4300),
  `${client.node.id} client told to leave`, ms, 10);
}

/** Age at which a race round is judged: whatever it was waiting for has landed by then. */
const SETTLE_MS = 2000;

/**
 * Rounds of a race scenario, each judged once SETTLE_MS old (an absence window per round),
 * at most 90 open at once so a connection stays under max_channels_per_connection (100).
 */
export class Rounds {
  constructor(judge) { this.judge = judge; this.open = []; }

  async add(round) {
    this.open.push({ ...round, at: Date.now() });
    while (this.open.length && (this.open.length > 90 || Date.now() - this.open[0].at > SETTLE_MS)) {
      await sleep(Math.max(0, SETTLE_MS - (Date.now() - this.open[0].at)));
      this.judge(this.open.shift());
    }
  }

  async finish() {
    while (this.open.length) {
      await sleep(Math.max(0, SETTLE_MS - (Date.now() - this.open[0].at)));
      this.judge(this.open.shift());
    }
  }
}
