"""Soak load that herald-bench does not make: presence joins and leaves, private channels
subscribed and left under fresh names, client events on both, long-lived listeners on
public and cache channels, and signed HTTP triggers at a steady rate. Loopback only; every
loop stops by itself at --seconds. Prints a JSON summary of what it did.

Usage: driver.py --port PORT --seconds N [--app-id 1 --key app-key --secret app-secret]
"""

import argparse
import asyncio
import hashlib
import hmac
import http.client
import json
import random
import threading
import time
from collections import Counter

from websockets.asyncio.client import connect

tally = Counter()


def sign(secret, text):
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


class Soak:
    def __init__(self, args):
        self.args = args
        self.url = f"ws://127.0.0.1:{args.port}/app/{args.key}?protocol=7&client=soak&version=1"
        self.deadline = time.monotonic() + args.seconds

    def running(self):
        return time.monotonic() < self.deadline

    def auth(self, socket_id, channel, channel_data=None):
        text = f"{socket_id}:{channel}" + (f":{channel_data}" if channel_data else "")
        return f"{self.args.key}:{sign(self.args.secret, text)}"

    async def open(self):
        ws = await connect(self.url, ping_interval=20, open_timeout=10, max_queue=64)
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert frame["event"] == "pusher:connection_established", frame
        tally["connections"] += 1
        return ws, json.loads(frame["data"])["socket_id"]

    async def subscribe(self, ws, socket_id, channel, channel_data=None):
        data = {"channel": channel}
        if not channel.startswith(("soak-pub-", "cache-")):
            data["auth"] = self.auth(socket_id, channel, channel_data)
        if channel_data:
            data["channel_data"] = channel_data
        await ws.send(json.dumps({"event": "pusher:subscribe", "data": data}))
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if frame.get("channel") == channel and frame["event"].startswith("pusher_internal:subscription"):
                tally["subscriptions"] += 1
                return
            self.count(frame)

    def count(self, frame):
        event = frame.get("event", "")
        if event == "pusher:error":
            tally["errors_received"] += 1
            tally[f"error {json.loads(frame['data']) if isinstance(frame['data'], str) else frame['data']}"] += 1
        else:
            tally["frames_received"] += 1

    async def drain(self, ws, seconds):
        """Reads whatever comes for `seconds`."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                self.count(json.loads(await asyncio.wait_for(ws.recv(), left)))
            except asyncio.TimeoutError:
                return

    async def guarded(self, name, body):
        """Runs `body` in a loop until the deadline; counts failures instead of dying."""
        while self.running():
            try:
                await body()
            except Exception as e:  # noqa: BLE001 - any failure is counted and retried
                tally[f"failed {name}: {type(e).__name__}"] += 1
                await asyncio.sleep(1)

    async def presence_member(self, k):
        """Joins a presence room, chats for 1-4 s, leaves (unsubscribe or just hang up)."""
        n = 0

        async def once():
            nonlocal n
            n += 1
            ws, socket_id = await self.open()
            try:
                channel = f"presence-soak-{k % 4}"
                member = json.dumps({"user_id": f"u{k}-{n % 7}", "user_info": {"n": n}})
                await self.subscribe(ws, socket_id, channel, member)
                tally["presence_joins"] += 1
                for _ in range(random.randint(1, 4)):
                    await ws.send(json.dumps({"event": "client-typing", "channel": channel, "data": {"k": k}}))
                    tally["client_events_sent"] += 1
                    await self.drain(ws, 1.0)
                if n % 2:
                    await ws.send(json.dumps({"event": "pusher:unsubscribe", "data": {"channel": channel}}))
                    await self.drain(ws, 0.1)
            finally:
                await ws.close()

        await self.guarded("presence", once)

    async def private_hopper(self, k):
        """One connection that subscribes to fresh private channels and leaves them;
        reconnects every 60 s."""

        async def once():
            ws, socket_id = await self.open()
            try:
                ends = time.monotonic() + 60
                n = 0
                while self.running() and time.monotonic() < ends:
                    n += 1
                    channel = f"private-soak-{k}-{random.getrandbits(40):x}"
                    await self.subscribe(ws, socket_id, channel)
                    await ws.send(json.dumps({"event": "client-note", "channel": channel, "data": {"n": n}}))
                    tally["client_events_sent"] += 1
                    await self.drain(ws, random.uniform(0.5, 2.0))
                    await ws.send(json.dumps({"event": "pusher:unsubscribe", "data": {"channel": channel}}))
            finally:
                await ws.close()

        await self.guarded("private", once)

    async def listener(self, k):
        """Stays subscribed to one public and one cache channel; reconnects every 2-4 min."""

        async def once():
            ws, socket_id = await self.open()
            try:
                await self.subscribe(ws, socket_id, f"soak-pub-{k % 10}")
                await self.subscribe(ws, socket_id, f"cache-soak-{k % 5}")
                await self.drain(ws, min(random.uniform(120, 240), self.deadline - time.monotonic()))
            finally:
                await ws.close()

        await self.guarded("listener", once)

    def triggers(self, rate):
        """Signed POST /events at `rate` per second, one keep-alive connection (a thread)."""
        a = self.args
        path = f"/apps/{a.app_id}/events"
        conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=10)
        period, n = 1.0 / rate, 0
        start = time.monotonic()
        while self.running():
            n += 1
            time.sleep(max(0.0, start + n * period - time.monotonic()))
            kind = n % 4
            channels = {0: [f"soak-pub-{n % 10}"], 1: [f"cache-soak-{n % 5}"],
                        2: [f"presence-soak-{n % 4}"], 3: [f"soak-pub-{n % 10}", f"private-soak-{n % 6}-x"]}[kind]
            body = json.dumps({"name": "tick", "channels": channels, "data": json.dumps({"n": n, "pad": "x" * 100})})
            query = {"auth_key": a.key, "auth_timestamp": str(int(time.time())), "auth_version": "1.0",
                     "body_md5": hashlib.md5(body.encode()).hexdigest()}
            canonical = "&".join(f"{k}={query[k]}" for k in sorted(query))
            query["auth_signature"] = sign(a.secret, f"POST\n{path}\n{canonical}")
            target = path + "?" + "&".join(f"{k}={v}" for k, v in query.items())
            # A keep-alive connection the server closed while idle is retried once on a new
            # connection, as HTTP clients do; only a second failure counts.
            for attempt in (1, 2):
                try:
                    conn.request("POST", target, body, {"content-type": "application/json"})
                    response = conn.getresponse()
                    response.read()
                    status = response.status
                    tally["triggers_ok" if status == 200 else f"triggers_status_{status}"] += 1
                    break
                except (OSError, http.client.HTTPException) as e:
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=10)
                    if attempt == 2:
                        tally[f"failed trigger: {type(e).__name__}"] += 1
                        time.sleep(1)


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--app-id", default="1")
    parser.add_argument("--key", default="app-key")
    parser.add_argument("--secret", default="app-secret")
    parser.add_argument("--presence", type=int, default=24, help="presence members at once")
    parser.add_argument("--private", type=int, default=8, help="private-channel hoppers")
    parser.add_argument("--listeners", type=int, default=100)
    parser.add_argument("--trigger-rate", type=float, default=20)
    args = parser.parse_args()
    soak = Soak(args)
    trigger = threading.Thread(target=soak.triggers, args=(args.trigger_rate,), daemon=True)
    trigger.start()
    tasks = [soak.presence_member(k) for k in range(args.presence)]
    tasks += [soak.private_hopper(k) for k in range(args.private)]
    tasks += [soak.listener(k) for k in range(args.listeners)]
    await asyncio.gather(*tasks)
    trigger.join(timeout=15)
    print(json.dumps(dict(sorted(tally.items())), indent=1))
    failures = sum(v for k, v in tally.items()
                   if k == "errors_received" or k.startswith(("failed", "triggers_status")))
    return 1 if failures > 0.01 * max(tally["connections"] + tally["triggers_ok"], 1) else 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
