"""Sign-in, send_to_user and terminate_user_connections with the `pusher` PyPI SDK
(spec §5.1-§5.5, §8.8) against raw websocket-client and Pysher connections."""
import json
import time

from conftest import APP, sign, uniq, wait_until


def signin(sdk, raw, user_data):
    """Sign `raw` in with the SDK's authenticate_user (json.dumps: non-canonical spacing)."""
    auth = sdk.authenticate_user(raw.socket_id, user_data)
    raw.send({"event": "pusher:signin", "data": auth})
    ok = raw.event("pusher:signin_success")
    assert ok["data"] == {"user_data": auth["user_data"]}, "user_data must be echoed byte-exact"
    return auth


def uid(prefix):
    return uniq(prefix + "_")


def test_authenticate_user_signin_succeeds_and_echoes_user_data(clients, sdk):
    r = clients.raw()
    auth = signin(sdk, r, {"id": uid("ada"), "user_info": {"name": "Ada", "tags": [1, 2]}})
    assert ", " in auth["user_data"] or ": " in auth["user_data"], "SDK JSON has spaces"
    r.send({"event": "pusher:ping", "data": {}})
    r.event("pusher:pong")


def test_locally_signed_signin_and_bad_signature_4009(clients):
    good = clients.raw()
    text = json.dumps({"id": uid("loc")})
    good.send({"event": "pusher:signin", "data": {
        "auth": "%s:%s" % (APP["key"], sign(APP["secret"], "%s::user::%s" % (good.socket_id, text))),
        "user_data": text}})
    assert good.event("pusher:signin_success")["data"]["user_data"] == text

    bad = clients.raw()
    bad.send({"event": "pusher:signin", "data": {
        "auth": "%s:%s" % (APP["key"], sign("not-the-secret", "%s::user::%s" % (bad.socket_id, text))),
        "user_data": text}})
    err = bad.event("pusher:error")
    assert err["data"]["code"] == 4009
    assert bad.wait_closed() == 4009


def test_send_to_user_reaches_every_socket_of_the_user_only(clients, sdk):
    ada, bob = uid("ada"), uid("bob")
    a1, a2, b = clients.raw(), clients.raw(), clients.raw()
    signin(sdk, a1, {"id": ada})
    signin(sdk, a2, {"id": ada})
    signin(sdk, b, {"id": bob})
    assert sdk.send_to_user(ada, "note", {"text": "hi", "n": 1}) == {}
    expected = json.dumps({"text": "hi", "n": 1})
    for r in (a1, a2):
        f = r.event("note")
        assert f == {"event": "note", "channel": "#server-to-user-%s" % ada, "data": expected}
    b.none(lambda j: j.get("event") == "note")


def test_send_to_user_with_string_data_is_verbatim(clients, sdk):
    ada = uid("ada")
    r = clients.raw()
    signin(sdk, r, {"id": ada})
    data = '{"k" :  "ü", "x":[1, 2]}'
    sdk.send_to_user(ada, "raw-data", data)
    assert r.event("raw-data")["data"] == data


def test_terminate_user_connections_closes_with_4009_and_spares_others(clients, sdk):
    ada, bob = uid("ada"), uid("bob")
    a1, a2, b = clients.raw(), clients.raw(), clients.raw()
    signin(sdk, a1, {"id": ada})
    signin(sdk, a2, {"id": ada})
    signin(sdk, b, {"id": bob})
    # pusher 3.3.x posts to /users/<id>/terminate_connections (no /apps/<id> prefix).
    req = sdk._pusher_client.terminate_user_connections.make_request(ada)
    assert req.path == "/users/%s/terminate_connections" % ada
    assert sdk.terminate_user_connections(ada) == {}
    for r in (a1, a2):
        err = r.event("pusher:error")
        assert err["data"]["code"] == 4009
        assert isinstance(err["data"]["message"], str)
        assert r.wait_closed() == 4009
    b.send({"event": "pusher:ping", "data": {}})
    b.event("pusher:pong")
    sdk.send_to_user(bob, "alive", "1")
    assert b.event("alive")["data"] == "1"


def test_pysher_signed_in_receives_send_to_user_and_is_terminated(clients, sdk):
    ada = uid("ada")
    c = clients.pysher()
    signed = []
    c.p.connection.bind("pusher:signin_success", signed.append)
    auth = sdk.authenticate_user(c.socket_id, {"id": ada})
    c.p.connection.send_event("pusher:signin", auth)
    wait_until(lambda: signed, what="pusher:signin_success in Pysher")
    assert signed[0] == {"user_data": auth["user_data"]}
    # Pysher has no user API; the frame tap sees the #server-to-user event.
    sdk.send_to_user(ada, "hello", {"x": 1})
    assert c.next("hello", "#server-to-user-%s" % ada) == json.dumps({"x": 1})

    sdk.terminate_user_connections(ada)
    wait_until(lambda: any(e == "pusher:error" for e, _ in c.conn_frames), what="pusher:error")
    err = [d for e, d in c.conn_frames if e == "pusher:error"][0]
    assert err["code"] == 4009
    wait_until(lambda: c.p.connection.state != "connected", what="Pysher leaving connected")
    time.sleep(1.5)  # reconnect_interval is 1 s: a 4009 must not be followed by a reconnect
    assert c.p.connection.state != "connected"


def test_watchlist_over_raw_socket(clients, sdk):
    ada, bob = uid("ada"), uid("bob")
    w = clients.raw()
    signin(sdk, w, {"id": ada, "watchlist": [bob]})
    first = w.event("pusher_internal:watchlist_events")
    data = json.loads(first["data"]) if isinstance(first["data"], str) else first["data"]
    assert data == {"events": [{"name": "offline", "user_ids": [bob]}]}
    b = clients.raw()
    signin(sdk, b, {"id": bob})
    on = w.event("pusher_internal:watchlist_events")
    data = json.loads(on["data"]) if isinstance(on["data"], str) else on["data"]
    assert data == {"events": [{"name": "online", "user_ids": [bob]}]}
