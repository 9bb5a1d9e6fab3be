"""Harness: a real herald process per test module, the `pusher` SDK, Pysher and a raw
websocket-client connection. Every wait has a timeout so a missing frame fails fast."""
import hashlib
import hmac
import json
import logging
import os
import queue
import re
import secrets
import shutil
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pusher
import pysher
import pytest
import websocket

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent.parent
HERALD_BIN = os.environ.get("HERALD_BIN") or str(REPO_ROOT / "target" / "debug" / "herald")

APP = {"id": "1", "key": "app-key", "secret": "app-secret"}
APP_NO_CLIENT = {"id": "2", "key": "app-key-2", "secret": "secret-2"}
SOCKET_ID_RE = re.compile(r"^\d+\.\d+$")
WAIT = 4.0

CONFIG = """
[server]
host = "127.0.0.1"
port = 6001
activity_timeout = 120

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
"""


class Server:
    def __init__(self, config=CONFIG):
        self.dir = tempfile.mkdtemp(prefix="herald-compat-py-")
        cfg = Path(self.dir) / "herald.toml"
        cfg.write_text(config)
        self.stderr = open(Path(self.dir) / "stderr.log", "wb")
        self.proc = subprocess.Popen(
            [HERALD_BIN, "serve", "--config", str(cfg), "--port", "0"],
            stdout=subprocess.PIPE, stderr=self.stderr, stdin=subprocess.DEVNULL)
        self.port = self._read_port()
        self.host = "127.0.0.1"

    def _read_port(self):
        found = queue.Queue()

        def reader():
            for raw in self.proc.stdout:  # keeps draining stdout for the process lifetime
                m = re.search(r"listening on ([0-9.]+):(\d+)", raw.decode("utf-8", "replace"))
                if m:
                    found.put(int(m.group(2)))
            found.put(None)

        threading.Thread(target=reader, daemon=True).start()
        try:
            port = found.get(timeout=10)
        except queue.Empty:
            port = None
        if port is None:
            self.stop()
            raise RuntimeError("herald did not print a listening line: "
                               + (Path(self.dir) / "stderr.log").read_text(errors="replace")[-3000:])
        return port

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def server():
    srv = Server()
    yield srv
    srv.stop()


def make_sdk(server, app=APP, **overrides):
    opts = dict(app_id=app["id"], key=app["key"], secret=app["secret"],
                host=server.host, port=server.port, ssl=False, timeout=5)
    opts.update(overrides)
    return pusher.Pusher(**opts)


@pytest.fixture
def sdk(server):
    return make_sdk(server)


def uniq(prefix):
    return "%s%s" % (prefix, secrets.token_hex(4))


def wait_until(cond, timeout=WAIT, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))


def sign(secret, text):
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------- raw socket

class RawWS:
    """websocket-client connection recording every frame; take() consumes in order."""

    def __init__(self, server, key=APP["key"], query="protocol=7", scheme="ws", sslopt=None):
        self.ws = websocket.create_connection(
            "%s://%s:%d/app/%s?%s" % (scheme, server.host, server.port, key, query),
            timeout=WAIT, sslopt=sslopt)
        self.frames = []  # [text, parsed, taken]
        self.lock = threading.Condition()
        self.closed = False
        self.close_code = None  # code of the server's close frame, if any
        threading.Thread(target=self._read, daemon=True).start()
        est = self.take(lambda j: j.get("event") == "pusher:connection_established")
        self.socket_id = json.loads(est["data"])["socket_id"]

    def _read(self):
        while True:
            try:
                self.ws.settimeout(None)
                opcode, frame = self.ws.recv_data_frame(True)
            except Exception:
                break
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                if len(frame.data) >= 2:
                    self.close_code = struct.unpack("!H", frame.data[:2])[0]
                break
            if opcode != websocket.ABNF.OPCODE_TEXT:
                continue
            text = frame.data.decode("utf-8") if isinstance(frame.data, bytes) else frame.data
            with self.lock:
                self.frames.append([text, json.loads(text), False])
                self.lock.notify_all()
        with self.lock:
            self.closed = True
            self.lock.notify_all()

    def send(self, obj):
        self.ws.send(obj if isinstance(obj, str) else json.dumps(obj))

    def take(self, pred, timeout=WAIT):
        deadline = time.time() + timeout
        with self.lock:
            while True:
                for f in self.frames:
                    if not f[2] and pred(f[1]):
                        f[2] = True
                        return f[1]
                left = deadline - time.time()
                if left <= 0:
                    raise AssertionError("no matching frame; got: %s" % [f[0] for f in self.frames])
                self.lock.wait(left)

    def event(self, name, channel=None, timeout=WAIT):
        return self.take(lambda j: j.get("event") == name
                         and (channel is None or j.get("channel") == channel), timeout)

    def none(self, pred, wait=0.4):
        time.sleep(wait)
        with self.lock:
            bad = [f[0] for f in self.frames if not f[2] and pred(f[1])]
        assert not bad, "unexpected frames: %s" % bad

    def wait_closed(self, timeout=WAIT):
        """Wait for the server to close the connection; returns its close code."""
        deadline = time.time() + timeout
        with self.lock:
            while not self.closed:
                left = deadline - time.time()
                if left <= 0:
                    raise AssertionError("connection not closed within %ss" % timeout)
                self.lock.wait(left)
        return self.close_code

    def subscribe(self, channel, secret=None, channel_data=None, key=APP["key"]):
        data = {"channel": channel}
        if secret:
            parts = [self.socket_id, channel] + ([channel_data] if channel_data is not None else [])
            data["auth"] = "%s:%s" % (key, sign(secret, ":".join(parts)))
        if channel_data is not None:
            data["channel_data"] = channel_data
        self.send({"event": "pusher:subscribe", "data": data})
        return self.event("pusher_internal:subscription_succeeded", channel)

    def close(self):
        try:
            self.ws.close()
        except Exception:
            pass


# --------------------------------------------------------------------------- Pysher

class PysherClient:
    """A Pysher client with a tap on every frame it dispatches (Pysher has a race where
    a reply arriving before its Channel object exists is dropped; the tap sees all)."""

    def __init__(self, server, app=APP, user_data=None, secret=None):
        self.p = pysher.Pusher(app["key"], custom_host=server.host, port=server.port,
                               secure=False, secret=app["secret"] if secret is None else secret,
                               user_data=user_data, log_level=logging.WARNING,
                               reconnect_interval=1)
        self.channel_frames = queue.Queue()
        self.conn_frames = []
        inner = self.p.connection.event_handler

        def tap(event, data, channel):
            self.channel_frames.put((event, data, channel))
            inner(event, data, channel)

        self.p.connection.event_handler = tap
        for ev in ("pusher:connection_established", "pusher:pong", "pusher:error"):
            self.p.connection.bind(ev, lambda data, ev=ev: self.conn_frames.append((ev, data)))
        self.p.connect()
        wait_until(lambda: self.p.connection.state == "connected", what="Pysher connected")
        self._pending = []

    @property
    def socket_id(self):
        return self.p.connection.socket_id

    def next(self, event, channel, timeout=WAIT):
        """Next channel frame (event, channel) seen by Pysher; returns its raw data."""
        for i, (e, d, c) in enumerate(self._pending):
            if e == event and c == channel:
                del self._pending[i]
                return d
        deadline = time.time() + timeout
        while True:
            left = deadline - time.time()
            if left <= 0:
                raise AssertionError("Pysher got no %s on %s" % (event, channel))
            try:
                e, d, c = self.channel_frames.get(timeout=left)
            except queue.Empty:
                continue
            if e == event and c == channel:
                return d
            self._pending.append((e, d, c))

    def subscribe(self, channel):
        ch = self.p.subscribe(channel)
        data = self.next("pusher_internal:subscription_succeeded", channel)
        return ch, data

    def close(self):
        # The close frame goes out at once; Pysher's reader thread (a daemon) sometimes
        # takes ~2 s to notice, so do not wait for it.
        self.p.disconnect(timeout=0.5)


@pytest.fixture
def clients(server):
    """Factory for Pysher / raw clients, all closed after the test."""
    made = []

    class Factory:
        def pysher(self, **kw):
            c = PysherClient(server, **kw)
            made.append(c)
            return c

        def raw(self, **kw):
            c = RawWS(server, **kw)
            made.append(c)
            return c

    yield Factory()
    for c in made:
        c.close()
