// A webhook receiver for the tests: a node http server that validates EVERY request with
// the npm SDK (`pusher.webhook({headers, rawBody}).isValid()`), records it, and can be told
// to fail the next N requests or to be "down" (answer 503) to exercise Herald's retries.
import http from 'node:http';
import { PusherServer, within } from './harness.mjs';

export class Sink {
  /** `app` is {id, key, secret} of the app whose webhooks come here. */
  constructor(app) {
    this.app = app;
    this.verifier = new PusherServer({ appId: app.id, key: app.key, secret: app.secret });
    this.requests = []; // {at, headers, raw, body, valid, status}
    this.failures = 0; // answer the next N requests with failStatus
    this.failStatus = 500;
    this.down = false; // answer 503 to everything while true
    this.waiters = [];
    this.server = http.createServer((req, res) => {
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        const raw = Buffer.concat(chunks).toString('utf8');
        let body;
        try { body = JSON.parse(raw); } catch { body = undefined; }
        const valid = this.verifier.webhook({ headers: req.headers, rawBody: raw }).isValid();
        let status = 200;
        if (this.down) status = 503;
        else if (this.failures > 0) { this.failures -= 1; status = this.failStatus; }
        this.requests.push({
          at: Date.now(), method: req.method, url: req.url, headers: req.headers, raw, body, valid, status,
        });
        res.writeHead(status, { 'content-type': 'text/plain' });
        res.end(status === 200 ? 'ok' : 'fail');
        this.waiters.forEach((w) => w());
      });
    });
  }

  async listen() {
    await new Promise((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${this.server.address().port}/hooks`;
    return this;
  }

  close() {
    this.server.closeAllConnections?.();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  failNext(n, status = 500) { this.failures = n; this.failStatus = status; }

  /** Every event of every request (accepted or not): [{ev, req}]. */
  all() { return this.requests.flatMap((req) => (req.body?.events ?? []).map((ev) => ({ ev, req }))); }

  /** Events of requests answered 200. */
  delivered() { return this.all().filter((x) => x.req.status === 200).map((x) => x.ev); }

  /** Delivered events on `channel` (in arrival order). */
  on(channel) { return this.delivered().filter((e) => e.channel === channel); }

  /** Wait until pred(this) is true. */
  until(pred, ms = 5000, what = 'webhook') {
    return within(new Promise((resolve) => {
      const check = () => {
        const v = pred(this);
        if (v) { this.waiters = this.waiters.filter((w) => w !== check); resolve(v); }
      };
      this.waiters.push(check);
      check();
    }), ms, what);
  }

  /** Wait for a delivered event matching pred; resolves with the event. */
  event(pred, ms = 5000, what = 'webhook event') {
    return this.until((s) => s.delivered().find(pred), ms, what);
  }

  /** Throw unless every request so far was a valid, well-formed Pusher webhook. */
  assertAllValid() {
    for (const r of this.requests) {
      if (!r.valid) throw new Error(`invalid webhook (npm SDK isValid() false): ${JSON.stringify(r.headers)} ${r.raw}`);
      if (r.method !== 'POST') throw new Error(`webhook method ${r.method}`);
      if (r.headers['content-type'] !== 'application/json') throw new Error(`content-type ${r.headers['content-type']}`);
    }
  }
}

/** [[apps.webhooks]] TOML for `sink` with every event type unless given. */
export function webhookToml(sink, {
  types = ['channel_occupied', 'channel_vacated', 'member_added', 'member_removed', 'client_event', 'cache_miss', 'subscription_count'],
  extra = '',
} = {}) {
  return `
[[apps.webhooks]]
url = "${sink.url}"
event_types = [${types.map((t) => `"${t}"`).join(', ')}]
${extra}`;
}
