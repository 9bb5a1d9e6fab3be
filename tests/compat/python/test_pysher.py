"""Pysher 1.0.8 (protocol 6, locally signed auth, json.dumps channel_data)."""
import json
import time

from conftest import APP_NO_CLIENT, SOCKET_ID_RE, make_sdk, uniq, wait_until


def test_pysher_connects_with_protocol_6_and_learns_a_socket_id(clients):
    c = clients.pysher()
    assert "protocol=6" in c.p.url
    assert SOCKET_ID_RE.match(c.socket_id)
    established = [d for e, d in c.conn_frames if e == "pusher:connection_established"]
    assert len(established) == 1
    assert isinstance(established[0], str), "connection_established data must be a JSON string"
    assert json.loads(established[0])["activity_timeout"] == 120


def test_pysher_initial_empty_string_ping_gets_a_connection_level_pong(clients):
    c = clients.pysher()
    # Pysher routes a frame to connection handlers only when it has no `channel` key.
    wait_until(lambda: any(e == "pusher:pong" for e, _ in c.conn_frames), what="pusher:pong")


def test_pysher_public_subscribe_without_auth_succeeds_with_empty_object_string(clients):
    c = clients.pysher()
    _, data = c.subscribe(uniq("py-public-"))
    assert data == "{}"


def test_pysher_receives_triggered_data_byte_identical(clients, sdk):
    c = clients.pysher()
    name = uniq("py-bytes-")
    ch, _ = c.subscribe(name)
    got = []
    ch.bind("thing", got.append)
    data = '{ "x" :  1,"u": "héllo ☃ 😀" , "e":"\\u00e9"}'
    sdk.trigger(name, "thing", data)
    wait_until(lambda: got, what="event callback")
    assert got == [data]


def test_pysher_private_subscribe_signed_locally(clients, sdk):
    c = clients.pysher()
    name = uniq("private-py-")
    ch, data = c.subscribe(name)
    assert data == "{}"
    got = []
    ch.bind("secret", got.append)
    sdk.trigger(name, "secret", {"k": [1, 2]})
    wait_until(lambda: got, what="private event")
    assert json.loads(got[0]) == {"k": [1, 2]}


def test_pysher_private_subscribe_with_wrong_secret_gets_code_null_error(clients):
    c = clients.pysher(secret="wrong-secret")
    name = uniq("private-py-bad-")
    c.p.subscribe(name)
    wait_until(lambda: any(e == "pusher:error" for e, _ in c.conn_frames), what="pusher:error")
    err = [d for e, d in c.conn_frames if e == "pusher:error"][0]
    assert isinstance(err, dict), "pusher:error data must be an object"
    assert err["code"] is None
    assert err["message"].startswith("Invalid signature")
    assert c.p.connection.state == "connected"


def test_pysher_presence_with_spaced_json_channel_data_verifies(clients, sdk):
    name = uniq("presence-py-")
    ada = clients.pysher(user_data={"user_id": "ada", "user_info": {"name": "Ada L"}})
    _, data = ada.subscribe(name)
    presence = json.loads(data)["presence"]
    assert presence["ids"] == ["ada"]
    assert presence["hash"] == {"ada": {"name": "Ada L"}}
    assert presence["count"] == 1
    assert sdk.users_info(name) == {"users": [{"id": "ada"}]}


def test_pysher_presence_member_added_and_removed(clients):
    name = uniq("presence-py2-")
    ada = clients.pysher(user_data={"user_id": "ada"})
    ada.subscribe(name)
    bob = clients.pysher(user_data={"user_id": "bob", "user_info": {"n": 2}})
    _, data = bob.subscribe(name)
    assert json.loads(data)["presence"]["count"] == 2
    added = ada.next("pusher_internal:member_added", name)
    assert json.loads(added) == {"user_id": "bob", "user_info": {"n": 2}}
    bob.close()
    removed = ada.next("pusher_internal:member_removed", name)
    assert json.loads(removed) == {"user_id": "bob"}


def test_pysher_client_event_relayed_to_other_pysher_not_echoed(clients):
    name = uniq("private-py-chat-")
    a = clients.pysher()
    b = clients.pysher()
    cha, _ = a.subscribe(name)
    chb, _ = b.subscribe(name)
    got_b, got_a = [], []
    chb.bind("client-hi", got_b.append)
    cha.bind("client-hi", got_a.append)
    cha.trigger("client-hi", {"from": "a"})
    wait_until(lambda: got_b, what="relayed client event")
    assert got_b == [{"from": "a"}], "object data is relayed as received"
    time.sleep(0.3)
    assert got_a == []


def test_apps_are_isolated_same_channel_name_on_two_apps(clients, server, sdk):
    name = uniq("private-py-iso-")
    one = clients.pysher()
    two = clients.pysher(app=APP_NO_CLIENT)
    ch1, _ = one.subscribe(name)
    ch2, _ = two.subscribe(name)
    got1, got2 = [], []
    ch1.bind("ev", got1.append)
    ch2.bind("ev", got2.append)
    make_sdk(server, APP_NO_CLIENT).trigger(name, "ev", "for-app-2")
    wait_until(lambda: got2, what="event on app 2")
    time.sleep(0.3)
    assert got2 == ["for-app-2"]
    assert got1 == [], "an event for app 2 leaked to app 1"
