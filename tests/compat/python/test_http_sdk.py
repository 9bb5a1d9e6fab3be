"""The `pusher` PyPI SDK (3.3.x) against real subscriptions."""
import json
import time

import pusher.http
import pytest
from pusher.errors import PusherBadAuth, PusherBadRequest, PusherBadStatus

from conftest import APP, make_sdk, uniq

EMPTY_MD5 = "d41d8cd98f00b204e9800998ecf8427e"


def presence(clients, name, user_id):
    r = clients.raw()
    r.subscribe(name, secret=APP["secret"], channel_data=json.dumps({"user_id": user_id}))
    return r


def public(clients, name):
    r = clients.raw()
    r.subscribe(name)
    return r


def test_trigger_returns_empty_object_and_delivers_data_verbatim(clients, sdk):
    name = uniq("py-trig-")
    r = public(clients, name)
    data = '{"k" : "ünïcødé ✓",  "n":[1, 2]}'
    assert sdk.trigger(name, "ev", data) == {}
    frame = r.event("ev", name)
    assert frame["data"] == data
    assert set(frame) == {"event", "channel", "data"}


def test_trigger_dict_data_arrives_as_the_sdk_json_string(clients, sdk):
    name = uniq("py-dict-")
    r = public(clients, name)
    sdk.trigger(name, "ev", {"a": 1, "b": "é"})
    assert r.event("ev", name)["data"] == json.dumps({"a": 1, "b": "é"}, ensure_ascii=False)


def test_trigger_to_several_channels(clients, sdk):
    names = [uniq("py-m1-"), uniq("py-m2-")]
    subs = [public(clients, n) for n in names]
    sdk.trigger(names, "fan", "x")
    for r, n in zip(subs, names):
        assert r.event("fan", n)["data"] == "x"


def test_trigger_socket_id_excludes_that_socket(clients, sdk):
    name = uniq("py-excl-")
    a = public(clients, name)
    b = public(clients, name)
    sdk.trigger(name, "ev", "x", socket_id=a.socket_id)
    b.event("ev", name)
    a.none(lambda j: j.get("event") == "ev")


def test_trigger_batch_delivers_all_events(clients, sdk):
    name = uniq("py-batch-")
    r = public(clients, name)
    assert sdk.trigger_batch([
        {"channel": name, "name": "one", "data": {"n": 1}},
        {"channel": name, "name": "two", "data": "2"},
    ]) == {}
    assert json.loads(r.event("one", name)["data"]) == {"n": 1}
    assert r.event("two", name)["data"] == "2"


def test_get_requests_carry_empty_body_md5_and_are_accepted(clients, sdk):
    req = sdk._pusher_client.channels_info.make_request()
    assert req.query_params["body_md5"] == EMPTY_MD5
    name = uniq("py-md5-")
    public(clients, name)
    assert name in sdk.channels_info()["channels"]


def test_channels_info_with_prefix_and_user_count(clients, sdk):
    tag = uniq("presence-pyci-")
    presence(clients, tag + "a", "u1")
    presence(clients, tag + "a", "u2")
    presence(clients, tag + "a", "u2")
    presence(clients, tag + "b", "u9")
    got = sdk.channels_info(prefix_filter=tag, attributes=["user_count"])
    assert got == {"channels": {tag + "a": {"user_count": 2}, tag + "b": {"user_count": 1}}}
    assert sdk.channels_info(prefix_filter=tag) == {"channels": {tag + "a": {}, tag + "b": {}}}


def test_channels_info_user_count_without_presence_prefix_is_bad_request(sdk):
    with pytest.raises(PusherBadRequest):
        sdk.channels_info(attributes=["user_count"])
    with pytest.raises(PusherBadRequest):
        sdk.channels_info(prefix_filter="py-", attributes=["user_count"])


def test_channel_info_public_and_presence(clients, sdk):
    pub = uniq("py-ci-")
    public(clients, pub)
    public(clients, pub)
    assert sdk.channel_info(pub, ["subscription_count"]) == {"occupied": True, "subscription_count": 2}
    pres = uniq("presence-py-ci-")
    presence(clients, pres, "a")
    presence(clients, pres, "a")
    info = sdk.channel_info(pres, ["user_count"])
    assert info["occupied"] is True and info["user_count"] == 1
    assert sdk.channel_info(uniq("py-empty-"))["occupied"] is False


def test_channel_info_user_count_on_public_channel_is_bad_request(clients, sdk):
    pub = uniq("py-ci-bad-")
    public(clients, pub)
    with pytest.raises(PusherBadRequest):
        sdk.channel_info(pub, ["user_count"])


def test_users_info_lists_distinct_users(clients, sdk):
    pres = uniq("presence-py-users-")
    presence(clients, pres, "x1")
    presence(clients, pres, "x2")
    presence(clients, pres, "x1")
    users = sdk.users_info(pres)["users"]
    assert sorted(u["id"] for u in users) == ["x1", "x2"]


def test_users_info_on_non_presence_channel_is_bad_request(sdk):
    with pytest.raises(PusherBadRequest):
        sdk.users_info(uniq("private-py-"))


def test_authenticate_output_subscribes_a_raw_socket(clients, sdk):
    """SDK-built presence auth (json.dumps with spaces) is accepted byte-exact."""
    r = clients.raw()
    name = uniq("presence-py-auth-")
    auth = sdk.authenticate(channel=name, socket_id=r.socket_id,
                            custom_data={"user_id": "u7", "user_info": {"a": "b"}})
    assert ": " in auth["channel_data"]
    r.send({"event": "pusher:subscribe",
            "data": {"channel": name, "auth": auth["auth"], "channel_data": auth["channel_data"]}})
    ok = r.event("pusher_internal:subscription_succeeded", name)
    assert json.loads(ok["data"])["presence"]["hash"] == {"u7": {"a": "b"}}


def test_wrong_secret_raises_bad_auth(server):
    bad = make_sdk(server, secret="nope")
    with pytest.raises(PusherBadAuth):
        bad.trigger(uniq("py-"), "ev", "x")
    with pytest.raises(PusherBadAuth):
        bad.channels_info()


def test_stale_timestamp_raises_bad_auth(sdk, monkeypatch):
    class OldClock:
        @staticmethod
        def time():
            return time.time() - 700

    monkeypatch.setattr(pusher.http, "time", OldClock)
    with pytest.raises(PusherBadAuth):
        sdk.channels_info()


def test_unknown_app_id_raises_bad_status_404(server):
    ghost = make_sdk(server, app={"id": "999", "key": APP["key"], "secret": APP["secret"]})
    with pytest.raises(PusherBadStatus, match=r"^404"):
        ghost.channels_info()


def test_oversized_data_raises_bad_status_413(sdk):
    with pytest.raises(PusherBadStatus, match=r"^413"):
        sdk.trigger(uniq("py-big-"), "ev", "z" * 12000)


def test_channel_names_with_punctuation_work_in_sdk_paths(clients, sdk):
    name = uniq("presence-py-odd") + "=a@b,c.d;e"
    presence(clients, name, "odd")
    assert sdk.channel_info(name, ["user_count"]) == {"occupied": True, "user_count": 1}
    assert sdk.users_info(name) == {"users": [{"id": "odd"}]}
