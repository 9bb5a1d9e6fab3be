"""Webhook receiver for the soak: answers 500 to a fixed share of requests (default 20 %),
checks each request's X-Pusher-Signature, and writes its tallies as JSON on SIGTERM.

Usage: receiver.py --secret S --tallies FILE [--fail 0.2] [--seed N]
Prints the port it listens on (127.0.0.1, chosen by the kernel) as its first line.
"""

import argparse
import hashlib
import hmac
import json
import random
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--secret", required=True)
    parser.add_argument("--tallies", required=True)
    parser.add_argument("--fail", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    chance = random.Random(args.seed)
    lock = threading.Lock()
    tallies = {"requests": 0, "failed_on_purpose": 0, "accepted": 0, "bad_signature": 0,
               "events": 0, "by_name": {}}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            expected = hmac.new(args.secret.encode(), body, hashlib.sha256).hexdigest()
            signed = hmac.compare_digest(expected, self.headers.get("x-pusher-signature", ""))
            with lock:
                tallies["requests"] += 1
                fail = chance.random() < args.fail
                if not signed:
                    tallies["bad_signature"] += 1
                elif fail:
                    tallies["failed_on_purpose"] += 1
                else:
                    tallies["accepted"] += 1
                    for event in json.loads(body).get("events", []):
                        tallies["events"] += 1
                        name = event.get("name", "?")
                        tallies["by_name"][name] = tallies["by_name"].get(name, 0) + 1
            status = 500 if fail or not signed else 200
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True

    def stop(*_):
        with lock:
            with open(args.tallies, "w") as out:
                json.dump(tallies, out, indent=1)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
