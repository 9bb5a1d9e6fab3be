"""Webhooks received by a Python sink that validates EVERY request with the PyPI SDK's
validate_webhook(key, signature, body) (spec §9; it also checks time_ms within 300 s)."""
import json
import shutil
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pusher
import pytest

from conftest import CONFIG, WAIT, RawWS, PysherClient, Server, sign, uniq, wait_until

HOOK = {"id": "5", "key": "hook-key", "secret": "hook-secret"}


class Sink:
    def __init__(self):
        self.verifier = pusher.Pusher(app_id=HOOK["id"], key=HOOK["key"], secret=HOOK["secret"])
        self.requests = []  # dicts: headers, raw, body (validate_webhook result), status, at
        self.fail_for = {}  # (channel, event name) -> requests carrying it to answer with 500
        self.lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode("utf-8")
                body = sink.verifier.validate_webhook(
                    self.headers.get("X-Pusher-Key", ""), self.headers.get("X-Pusher-Signature", ""), raw)
                with sink.lock:
                    status = 200
                    keys = {(e.get("channel"), e.get("name")) for e in (body or {}).get("events", [])}
                    for k in keys & set(sink.fail_for):
                        if sink.fail_for[k] > 0:
                            sink.fail_for[k] -= 1
                            status = 500
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    sink.requests.append({"headers": headers, "raw": raw, "body": body,
                                          "status": status, "at": time.time()})
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/hooks" % self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def all_valid(self):
        with self.lock:
            bad = [r for r in self.requests if r["body"] is None
                   or r["headers"].get("content-type") != "application/json"]
        assert not bad, "webhooks rejected by validate_webhook: %s" % [(r["headers"], r["raw"]) for r in bad]

    def attempts(self, channel):
        with self.lock:
            return [(r, e) for r in self.requests if r["body"]
                    for e in r["body"]["events"] if e.get("channel") == channel]

    def on(self, channel):
        return [e for r, e in self.attempts(channel) if r["status"] == 200]

    def wait(self, channel, name, count=1, timeout=WAIT):
        wait_until(lambda: len([e for e in self.on(channel) if e["name"] == name]) >= count,
                   timeout, "%d x %s on %s" % (count, name, channel))
        return [e for e in self.on(channel) if e["name"] == name]


@pytest.fixture(scope="module")
def hook():
    sink = Sink()
    data_dir = tempfile.mkdtemp(prefix="herald-compat-pywh-")
    srv = Server(config=CONFIG + """
[webhooks]
data_dir = "%s"
removal_delay_ms = 300
retry_for = 300
timeout = 10

[[apps]]
id = "5"
key = "hook-key"
secret = "hook-secret"
enable_client_messages = true

[[apps.webhooks]]
url = "%s"
event_types = ["channel_occupied", "channel_vacated", "member_added", "member_removed",
               "client_event", "cache_miss", "subscription_count"]
""" % (data_dir, sink.url))
    yield srv, sink
    srv.stop()
    sink.close()
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def made():
    conns = []
    yield conns
    for c in conns:
        c.close()


def no_id(ev):
    assert isinstance(ev.get("id"), str) and ev["id"], "event without a string id: %s" % ev
    return {k: v for k, v in ev.items() if k != "id"}


def test_validate_webhook_accepts_herald_requests_and_rejects_tampering(hook, made):
    srv, sink = hook
    name = uniq("pywh-fmt-")
    r = RawWS(srv, key=HOOK["key"])
    made.append(r)
    r.subscribe(name)
    sink.wait(name, "channel_occupied")
    req = [q for q, _ in sink.attempts(name)][0]
    assert req["headers"]["content-type"] == "application/json"
    assert req["headers"]["x-pusher-key"] == HOOK["key"]
    assert req["headers"]["x-pusher-signature"] == sign(HOOK["secret"], req["raw"])
    assert set(req["body"]) == {"time_ms", "events"}
    assert abs(req["body"]["time_ms"] - time.time() * 1000) < 5000
    # The validator is real: a changed body or another key is refused.
    v = sink.verifier
    assert v.validate_webhook(HOOK["key"], req["headers"]["x-pusher-signature"], req["raw"] + " ") is None
    assert v.validate_webhook("other-key", req["headers"]["x-pusher-signature"], req["raw"]) is None
    sink.all_valid()


def test_occupied_vacated_shapes(hook, made):
    srv, sink = hook
    name = uniq("pywh-occ-")
    r = RawWS(srv, key=HOOK["key"])
    made.append(r)
    r.subscribe(name)
    assert [no_id(e) for e in sink.wait(name, "channel_occupied")] == [
        {"name": "channel_occupied", "channel": name}]
    r.send({"event": "pusher:unsubscribe", "data": {"channel": name}})
    assert [no_id(e) for e in sink.wait(name, "channel_vacated")] == [
        {"name": "channel_vacated", "channel": name}]
    sink.all_valid()


def test_pysher_presence_member_events_and_client_event(hook, made):
    srv, sink = hook
    name = uniq("presence-pywh-")
    a = PysherClient(srv, app=HOOK, user_data={"user_id": "ada", "user_info": {"n": 1}})
    made.append(a)
    ch, _ = a.subscribe(name)
    b = RawWS(srv, key=HOOK["key"])
    made.append(b)
    b.subscribe(name, secret=HOOK["secret"], key=HOOK["key"], channel_data='{"user_id":"bob"}')
    added = sink.wait(name, "member_added", 2)
    assert sorted(no_id(e)["user_id"] for e in added) == ["ada", "bob"]
    assert all(set(no_id(e)) == {"name", "channel", "user_id"} for e in added)

    ch.trigger("client-typing", {"who": "Ada"})
    ce = sink.wait(name, "client_event")[0]
    assert no_id(ce) == {"name": "client_event", "channel": name, "event": "client-typing",
                         "data": json.dumps({"who": "Ada"}), "socket_id": a.socket_id, "user_id": "ada"}
    b.close()
    removed = sink.wait(name, "member_removed")
    assert [no_id(e) for e in removed] == [{"name": "member_removed", "channel": name, "user_id": "bob"}]
    sink.all_valid()


def test_failed_delivery_is_retried_with_the_same_id_and_still_validates(hook, made):
    srv, sink = hook
    name = uniq("pywh-retry-")
    sink.fail_for[(name, "channel_occupied")] = 1
    r = RawWS(srv, key=HOOK["key"])
    made.append(r)
    r.subscribe(name)
    sink.wait(name, "channel_occupied", timeout=6)
    tries = [(q["status"], e["id"]) for q, e in sink.attempts(name) if e["name"] == "channel_occupied"]
    assert [s for s, _ in tries] == [500, 200]
    assert tries[0][1] == tries[1][1], "a retry must carry the same event id"
    sink.all_valid()


def test_event_ids_unique_across_distinct_events(hook, made):
    srv, sink = hook
    names = [uniq("pywh-uniq-") for _ in range(3)]
    r = RawWS(srv, key=HOOK["key"])
    made.append(r)
    for n in names:
        r.subscribe(n)
    for n in names:
        sink.wait(n, "channel_occupied")
    delivered = [e for q in sink.requests if q["body"] and q["status"] == 200 for e in q["body"]["events"]]
    ids = [e["id"] for e in delivered]
    assert len(ids) == len(set(ids)), "delivered events share an id"
