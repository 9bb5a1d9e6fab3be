"""A three-node Herald cluster driven by the `pusher` PyPI SDK: triggers, batches, channel
and user queries, send_to_user and terminate_user_connections asked of one node and acting
on sockets of the others. Once on a private Redis, once on a private NATS."""
import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest

from conftest import APP, CONFIG, RawWS, Server, make_sdk, uniq, wait_until

NATS_SERVER = "/usr/sbin/nats-server"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """A private redis-server or nats-server on a free port, killed at the end."""

    def __init__(self, kind):
        self.kind = kind
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="herald-compat-broker-")
        if kind == "redis":
            args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                    "--save", "", "--appendonly", "no", "--dir", self.dir]
        else:
            args = [NATS_SERVER, "-a", "127.0.0.1", "-p", str(self.port)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL)
        wait_until(self._accepts, timeout=10, what="%s on %d" % (kind, self.port))

    def _accepts(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            return True
        except OSError:
            return False

    @property
    def url(self):
        return "%s://127.0.0.1:%d" % (self.kind, self.port)

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def ready(node):
    try:
        with urllib.request.urlopen("http://%s:%d/ready" % (node.host, node.port), timeout=2) as r:
            return r.status == 200
    except Exception:
        return False


@pytest.fixture(scope="module", params=["redis", "nats"])
def nodes(request):
    kind = request.param
    broker = Broker(kind)
    prefix = uniq("compat-py-")
    started = []
    try:
        for i in range(3):
            started.append(Server(config=CONFIG + """
[cluster]
driver = "%s"
%s_url = "%s"
prefix = "%s"
node_id = "py-node-%d"
heartbeat_interval = 1
node_timeout = 3
""" % (kind, kind, broker.url, prefix, i)))
        for node in started:
            wait_until(lambda: ready(node), timeout=20, what="/ready 200")
        yield started
    finally:
        for node in started:
            node.stop()
        broker.stop()


@pytest.fixture
def raws():
    made = []

    def make(node):
        r = RawWS(node)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


def await_routing(sdk, raws_, channel):
    """Warm-up triggers until every socket got one: a node starts receiving a channel's
    events from the others shortly after its first local subscriber joined (see the
    [SERVER BUG] scenario in node/cluster.test.mjs)."""
    deadline = time.time() + 10
    for r in raws_:
        while True:
            sdk.trigger(channel, "warmup", {})
            try:
                r.event("warmup", channel, timeout=0.3)
                break
            except AssertionError:
                assert time.time() < deadline, "the channel never reached every node"


def test_trigger_and_batch_on_one_node_reach_the_others_once_in_order(nodes, raws):
    a, b, c = nodes
    channel = uniq("private-py-")
    subs = [raws(n) for n in nodes]
    for r in subs:
        r.subscribe(channel, secret=APP["secret"])
    sdk = make_sdk(a)
    await_routing(sdk, subs, channel)
    for n in range(20):
        sdk.trigger(channel, "e", {"n": n})
    make_sdk(c).trigger_batch([{"channel": channel, "name": "b", "data": {"k": k}} for k in range(5)])
    for r in subs:
        got = [json.loads(r.event("e", channel)["data"])["n"] for _ in range(20)]
        assert got == list(range(20))
        assert [json.loads(r.event("b", channel)["data"])["k"] for _ in range(5)] == list(range(5))
    # socket_id of B's socket, triggered on C: A and C get it, B does not.
    make_sdk(c).trigger(channel, "x", {}, socket_id=subs[1].socket_id)
    make_sdk(c).trigger(channel, "mark", {})
    for r in subs:
        r.event("mark", channel)
    assert [sum(1 for f in r.frames if f[1].get("event") == "x") for r in subs] == [1, 0, 1]
    assert [sum(1 for f in r.frames if f[1].get("event") == "e") for r in subs] == [20, 20, 20]


def test_channel_queries_count_every_node(nodes, raws):
    a, b, c = nodes
    news = uniq("news-py-")
    room = uniq("presence-py-")
    for node, name in [(a, news), (b, news), (c, news + "-eu")]:
        raws(node).subscribe(name)
    for node, user in [(a, "u1"), (b, "u2"), (c, "u2")]:
        raws(node).subscribe(room, secret=APP["secret"], channel_data=json.dumps({"user_id": user}))
    for node in nodes:
        sdk = make_sdk(node)
        wait_until(lambda: sdk.channels_info(prefix_filter=news, attributes=["subscription_count"])
                   == {"channels": {news: {"subscription_count": 2}, news + "-eu": {"subscription_count": 1}}},
                   timeout=10, what="channels_info on a node")
        wait_until(lambda: sdk.channel_info(room, ["user_count", "subscription_count"])
                   == {"occupied": True, "user_count": 2, "subscription_count": 3},
                   timeout=10, what="channel_info of the presence channel")
        assert sorted(u["id"] for u in sdk.users_info(room)["users"]) == ["u1", "u2"]


def test_send_to_user_and_terminate_reach_a_user_on_another_node(nodes, raws):
    a, b, c = nodes
    ada, bob = uniq("ada_"), uniq("bob_")
    on_a, on_b, bob_b = raws(a), raws(b), raws(b)
    sdk_c = make_sdk(c)
    for r, user in [(on_a, ada), (on_b, ada), (bob_b, bob)]:
        auth = sdk_c.authenticate_user(r.socket_id, {"id": user})
        r.send({"event": "pusher:signin", "data": auth})
        r.event("pusher:signin_success")
    assert sdk_c.send_to_user(ada, "note", {"text": "hi"}) == {}
    for r in (on_a, on_b):
        assert r.event("note")["data"] == json.dumps({"text": "hi"})
    assert sdk_c.terminate_user_connections(ada) == {}
    for r in (on_a, on_b):
        assert r.event("pusher:error")["data"]["code"] == 4009
        assert r.wait_closed() == 4009
    sdk_c.send_to_user(bob, "still", {})
    bob_b.event("still")
    assert not any(f[1].get("event") == "note" for f in bob_b.frames)
