// A Herald cluster seen through the official clients: three `herald serve` processes on a
// private Redis, then the same scenarios on a private NATS. pusher-js clients sit on
// different nodes, the npm SDK calls any node; a client must not tell three nodes from one.
import { describe, test, before, after, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { isDeepStrictEqual } from 'node:util';
import { APPS, sleep, uniq, within } from './harness.mjs';
import {
  Cluster, AuthEndpoint, NODE_TIMEOUT_S, REMOVAL_DELAY_MS, connected, subscribe, signIn,
  record, atLeast, poll, closeClients, memberIds, memberFrames, leftNode, Rounds,
} from './cluster-harness.mjs';
import { Sink, webhookToml } from './webhook-sink.mjs';

/** App 5: webhooks of every node go to one sink; client events on. */
const HOOK = { id: '5', key: 'hook-key', secret: 'hook-secret' };
const hookApp = (sink) => `
[[apps]]
id = "5"
key = "hook-key"
secret = "hook-secret"
enable_client_messages = true
${webhookToml(sink, { types: ['channel_occupied', 'channel_vacated', 'member_added', 'member_removed'] })}`;

const count = (list, x) => list.filter((y) => y === x).length;

/** Rounds of the [SERVER BUG] races: each round hits its window a few % of the time. */
const RACE_ROUNDS = 150;

for (const kind of ['redis', 'nats']) {
  describe(`cluster over ${kind}`, () => {
    let cluster;
    let auth;
    let sink;
    let nodes;

    before(async () => {
      sink = await new Sink(HOOK).listen();
      auth = await new AuthEndpoint().listen([...Object.values(APPS), HOOK]);
      cluster = await new Cluster(kind, { appsToml: hookApp(sink) }).start();
    });
    after(async () => {
      await closeClients();
      await cluster?.stop();
      await auth?.close();
      await sink?.close();
    });
    // A scenario that killed a node or the broker leaves it to this to bring them back.
    beforeEach(async () => {
      await cluster.heal();
      nodes = cluster.nodes;
    });
    afterEach(async () => {
      await closeClients();
      sink.assertAllValid();
    });

    /** A test whose failure keeps the nodes' logs (their directory is printed). */
    const scenario = (name, fn, options = {}) => test(name, options, async () => {
      try {
        await fn();
      } catch (e) {
        cluster.failed = true;
        throw e;
      }
    });

    /**
     * Sends warm-up events from `node` until each channel has one. A node subscribes to a
     * channel's broker topic asynchronously after its first local subscriber joined; until
     * then events from other nodes miss it (see the [SERVER BUG] scenario below). Scenarios
     * about something else wait this out so they test only their own property.
     */
    async function awaitRouting(node, channels) {
      const name = channels[0].name;
      const seen = channels.map((ch) => record(ch, 'warmup'));
      const api = node.sdk(channels[0].pusher.key === HOOK.key ? HOOK : APPS.main);
      await poll(async () => {
        await api.trigger(name, 'warmup', {});
        await sleep(100);
        return seen.every((s) => s.length > 0);
      }, `warm-up events on ${name} from ${node.id}`, 10000, 0);
    }

    /**
     * Waits until every node has seen what `client`'s node announced so far: changes from one
     * node are applied in order, so once a later change (a fence channel occupied) is
     * visible on a node, the earlier ones (sign-ins, subscriptions) are too.
     */
    async function fence(client) {
      const name = uniq('fence-');
      await subscribe(client, name);
      for (const node of nodes.filter((n) => n.running)) {
        await poll(async () => (await node.get(`/channels/${name}`)).occupied === true,
          `fence ${name} visible on ${node.id}`);
      }
      client.unsubscribe(name);
    }

    // ------------------------------------------------------------ 1. events

    scenario('an event triggered on A reaches B and C once and in order; socket_id exclusion and client events cross nodes', async () => {
      const [a, b, c] = nodes;
      const name = uniq('private-news-');
      const ca = await connected(a, auth);
      const cb = await connected(b, auth);
      const cc = await connected(c, auth);
      const chans = await Promise.all([ca, cb, cc].map((cl) => subscribe(cl, name)));
      await awaitRouting(a, chans);
      const got = chans.map((ch) => record(ch, 'e', (d) => d.n));
      const api = a.sdk();
      for (let n = 0; n < 30; n += 1) await api.trigger(name, 'e', { n });
      // Events from one node keep their order: once 'end' is in, every 'e' is.
      const ends = chans.map((ch) => record(ch, 'end'));
      await api.trigger(name, 'end', {});
      await Promise.all(ends.map((e, i) => atLeast(e, 1, `'end' on ${nodes[i].id}`)));
      const expected = Array.from({ length: 30 }, (_, n) => n);
      got.forEach((g, i) => assert.deepEqual(g, expected, `events on ${nodes[i].id}`));

      // socket_id of B's client, triggered on A: A and C get it, B does not.
      const x = chans.map((ch) => record(ch, 'x'));
      const marks = chans.map((ch) => record(ch, 'mark'));
      await api.trigger(name, 'x', { k: 1 }, { socket_id: cb.connection.socket_id });
      await api.trigger(name, 'mark', {});
      await Promise.all(marks.map((m, i) => atLeast(m, 1, `'mark' on ${nodes[i].id}`)));
      assert.deepEqual(x.map((l) => l.length), [1, 0, 1], 'x on A, B, C (B excluded)');

      // A client event from C reaches A and B once, not C.
      const typing = chans.map((ch) => record(ch, 'client-typing'));
      assert.ok(chans[2].trigger('client-typing', { who: 'c' }), 'pusher-js sent the client event');
      await atLeast(typing[0], 1, 'client event on A');
      await atLeast(typing[1], 1, 'client event on B');
      await sleep(500); // absence window: no echo to C, no duplicate on A or B
      assert.deepEqual(typing.map((l) => l.length), [1, 1, 0]);
      assert.deepEqual(typing[0][0], { who: 'c' });
    });

    scenario('events sent on other nodes right after subscription_succeeded are delivered', async () => {
      // Fails today: a node subscribes to a channel's broker topic asynchronously after
      // queueing subscription_succeeded to its first local subscriber, so what other nodes
      // publish on the channel in the next milliseconds is lost. Each round: B's client
      // subscribes to a fresh private channel that a client on A is already in; the moment
      // pusher-js on B reports success, A's and C's HTTP APIs get a trigger and the client
      // on A sends a client event. Measured: 1-7 % of the triggers and ~1 % of the client
      // events (pusher-js sends them later than a trigger lands) never arrive.
      const [a, b, c] = nodes;
      // Senders take turns: each stays under max_client_events_per_second (10).
      const senders = await Promise.all(Array.from({ length: 8 }, () => connected(a, auth)));
      const cb = await connected(b, auth);
      const apis = [a.sdk(), c.sdk()];
      const kinds = ['from-a', 'from-c', 'client-a'];
      const lost = Object.fromEntries(kinds.map((k) => [k, 0]));
      const rounds = new Rounds((r) => {
        for (const k of kinds) {
          if (r.got[k].length === 0) lost[k] += 1;
          assert.ok(r.got[k].length <= 1, `${r.name}: ${k} delivered ${r.got[k].length} times`);
        }
        r.sender.unsubscribe(r.name);
        cb.unsubscribe(r.name);
      });
      for (let i = 0; i < RACE_ROUNDS; i += 1) {
        const name = uniq('private-race-');
        const sender = senders[i % senders.length];
        const channel = await subscribe(sender, name);
        const ch = await subscribe(cb, name);
        const got = Object.fromEntries(kinds.map((k) => [k, record(ch, k)]));
        const triggers = Promise.all(apis.map((api, j) => api.trigger(name, kinds[j], {})));
        channel.trigger('client-a', {});
        await triggers;
        await rounds.add({ name, got, sender });
      }
      await rounds.finish();
      for (const s of senders) assert.deepEqual(s.errors, [], `errors on a sender on ${a.id}`);
      assert.deepEqual(lost, Object.fromEntries(kinds.map((k) => [k, 0])),
        `events lost of ${RACE_ROUNDS} sent on ${a.id} and ${c.id} right after subscription_succeeded on ${b.id}: ${JSON.stringify(lost)}`);
    });

    // ------------------------------------------------------------ 2. presence

    scenario('presence: members from every node; one member per user across nodes; member_added/removed once', async () => {
      const [a, b, c] = nodes;
      const name = uniq('presence-room-');
      const join = async (node, user) => {
        const cl = await connected(node, auth, { member: { user_id: user, user_info: { name: user.toUpperCase() } } });
        const ch = await subscribe(cl, name);
        return {
          cl, ch, added: memberFrames(cl, name, 'added'), removed: memberFrames(cl, name, 'removed'),
        };
      };
      const usersOn = async (node) => (await node.get(`/channels/${name}/users`)).users.map((u) => u.id).sort();
      const ada = await join(a, 'ada');
      await poll(async () => (await usersOn(b)).includes('ada'), 'ada listed on B');
      const bob = await join(b, 'bob');
      assert.deepEqual(memberIds(bob.ch), ['ada', 'bob'], 'roster on B lists the member on A');
      assert.deepEqual(bob.ch.members.get('ada'), { id: 'ada', info: { name: 'ADA' } });
      await atLeast(ada.added, 1, 'member_added bob on A');
      // Bob's second socket, on C: one member, no member_added.
      await poll(async () => (await usersOn(c)).length === 2, 'ada and bob listed on C');
      const bob2 = await join(c, 'bob');
      assert.deepEqual(memberIds(bob2.ch), ['ada', 'bob']);
      assert.equal(bob2.ch.members.count, 2);
      const carl = await join(c, 'carl');
      assert.deepEqual(memberIds(carl.ch), ['ada', 'bob', 'carl']);
      for (const m of [ada, bob, bob2]) {
        await poll(() => memberIds(m.ch).length === 3, `${m.cl.node.id} sees carl`);
      }
      for (const node of nodes) {
        await poll(async () => {
          const info = await node.get(`/channels/${name}`, { info: 'subscription_count,user_count' });
          return info.subscription_count === 4 && info.user_count === 3;
        }, `4 subscriptions and 3 users counted on ${node.id}`);
      }
      // Bob's socket on B leaves: bob stays. His socket on C leaves: member_removed once.
      bob.cl.disconnect();
      await poll(async () => (await a.get(`/channels/${name}`, { info: 'subscription_count' })).subscription_count === 3,
        'bob\'s first socket gone');
      bob2.cl.disconnect();
      await atLeast(ada.removed, 1, 'member_removed on A');
      await atLeast(carl.removed, 1, 'member_removed on C');
      await sleep(1000); // absence window: no second member_removed, no stray member_added
      assert.deepEqual(ada.added, ['bob', 'carl'], 'member_added seen on A');
      assert.deepEqual(ada.removed, ['bob'], 'member_removed seen on A');
      assert.deepEqual(carl.added, [], 'member_added seen by carl (joined last)');
      assert.deepEqual(carl.removed, ['bob'], 'member_removed seen on C');
      assert.deepEqual(memberIds(ada.ch), ['ada', 'carl']);
      assert.deepEqual(memberIds(carl.ch), ['ada', 'carl']);
      for (const node of nodes) {
        await poll(async () => JSON.stringify(await usersOn(node)) === '["ada","carl"]', `users on ${node.id}`);
      }
    });

    scenario('a member already in the subscription roster gets no member_added for it', async () => {
      // Fails today (measured 1-8 % of rounds): ada subscribes on A while bob subscribes on
      // B; B's view already has ada when bob joins, so bob's roster lists her, and then the
      // owner's member_added for ada reaches bob too. pusher-js emits pusher:member_added
      // for a member it already lists (a second "ada joined"). Each round is a fresh
      // channel, both subscriptions sent together.
      const [a, b] = nodes;
      const ca = await connected(a, auth, { member: { user_id: 'ada' } });
      const cb = await connected(b, auth, { member: { user_id: 'bob' } });
      const twice = [];
      const never = [];
      const rounds = new Rounds((r) => {
        if (r.roster.includes('ada') && r.added.includes('ada')) twice.push(r.name);
        if (!r.roster.includes('ada') && !r.added.includes('ada')) never.push(r.name);
        ca.unsubscribe(r.name);
        cb.unsubscribe(r.name);
      });
      for (let i = 0; i < RACE_ROUNDS; i += 1) {
        const name = uniq('presence-race-');
        const joined = subscribe(ca, name);
        const ch = cb.subscribe(name);
        const added = record(ch, 'pusher:member_added', (m) => m.id);
        const roster = await within(new Promise((resolve) => {
          ch.bind('pusher:subscription_succeeded', (members) => resolve(Object.keys(members.members)));
        }), 8000, `bob's subscription to ${name}`);
        await joined;
        await rounds.add({ name, roster, added });
      }
      await rounds.finish();
      assert.deepEqual(never, [], 'bob must learn of ada (roster or member_added)');
      assert.deepEqual(twice, [], `${twice.length} of ${RACE_ROUNDS} channels: ada in bob's roster AND member_added ada`);
    });

    // ------------------------------------------------------------ 3. HTTP reads

    scenario('GET /channels, /channels/<name>, /users and trigger info count every node, asked of any node', async () => {
      const [a, b, c] = nodes;
      const news = uniq('news-');
      const room = uniq('presence-lobby-');
      const subs = [[a, news], [b, news], [c, `${news}-eu`], [c, uniq('other-')]];
      for (const [node, name] of subs) await subscribe(await connected(node, auth), name);
      await subscribe(await connected(a, auth, { member: { user_id: 'u1' } }), room);
      await subscribe(await connected(c, auth, { member: { user_id: 'u2' } }), room);
      await subscribe(await connected(b, auth, { member: { user_id: 'u2' } }), room);
      const wanted = { [news]: { subscription_count: 2 }, [`${news}-eu`]: { subscription_count: 1 } };
      for (const node of nodes) {
        let last;
        await poll(async () => {
          last = await node.get('/channels', { filter_by_prefix: news, info: 'subscription_count' });
          return isDeepStrictEqual(last, { channels: wanted });
        }, `/channels on ${node.id}`).catch((e) => { throw new Error(`${e.message}: last ${JSON.stringify(last)}`); });
        const lobby = await node.get('/channels', { filter_by_prefix: 'presence-lobby', info: 'user_count' });
        assert.deepEqual(lobby.channels[room], { user_count: 2 }, `presence /channels on ${node.id}`);
        assert.deepEqual(await node.get(`/channels/${news}`, { info: 'subscription_count' }),
          { occupied: true, subscription_count: 2 }, `/channels/${news} on ${node.id}`);
        assert.deepEqual(await node.get(`/channels/${room}`, { info: 'user_count,subscription_count' }),
          { occupied: true, user_count: 2, subscription_count: 3 }, `/channels/${room} on ${node.id}`);
        const users = (await node.get(`/channels/${room}/users`)).users.map((u) => u.id).sort();
        assert.deepEqual(users, ['u1', 'u2'], `/users on ${node.id}`);
      }
      const res = await c.sdk().trigger(news, 'e', {}, { info: 'subscription_count' });
      assert.deepEqual(await res.json(), { channels: { [news]: { subscription_count: 2 } } });
    });

    // ------------------------------------------------------------ 4. users

    scenario('sendToUser, terminateUserConnections and watchlist reach users signed in on other nodes', async () => {
      const [a, b, c] = nodes;
      const ada = uniq('ada-');
      const bob = uniq('bob-');
      const carol = uniq('carol-');
      const dave = uniq('dave-');
      const ada1 = await signIn(await connected(a, auth, { signinAs: { id: ada } }));
      const ada2 = await signIn(await connected(b, auth, { signinAs: { id: ada } }));
      const bobC = await signIn(await connected(c, auth, { signinAs: { id: bob } }));
      const carolC = await signIn(await connected(c, auth, { signinAs: { id: carol } }));
      await fence(carolC); // every node has applied the sign-ins on C (ada is local to B)

      // Server-to-user from C reaches both of ada's sockets (A and B) once, not bob.
      const notes = [ada1, ada2, bobC].map((cl) => record(cl.user, 'note'));
      const res = await c.sdk().sendToUser(ada, 'note', { text: 'hi' });
      assert.equal(res.status, 200);
      await atLeast(notes[0], 1, 'note on A');
      await atLeast(notes[1], 1, 'note on B');
      const marks = [ada1, ada2].map((cl) => record(cl.user, 'mark'));
      await c.sdk().sendToUser(ada, 'mark', {});
      await atLeast(marks[0], 1, 'mark on A');
      await atLeast(marks[1], 1, 'mark on B');
      assert.deepEqual(notes.map((n) => n.length), [1, 1, 0]);
      assert.deepEqual(notes[0][0], { text: 'hi' });

      // Watchlist: initial status from every node, then online/offline of users elsewhere.
      const w = await connected(b, auth, { signinAs: { id: uniq('watcher-'), watchlist: [carol, dave, ada] } });
      const log = [];
      for (const ev of ['online', 'offline']) {
        w.user.watchlist.bind(ev, (e) => log.push(`${e.name}:${[...e.user_ids].sort().join(',')}`));
      }
      await signIn(w);
      await atLeast(log, 2, 'initial watchlist status');
      assert.deepEqual([...log].sort(), [`offline:${dave}`, `online:${[ada, carol].sort().join(',')}`]);
      log.length = 0;
      const daveA = await signIn(await connected(a, auth, { signinAs: { id: dave } }));
      await atLeast(log, 1, 'dave online');
      daveA.disconnect();
      await atLeast(log, 2, 'dave offline');
      assert.deepEqual(log, [`online:${dave}`, `offline:${dave}`]);

      // Terminate on C closes ada's sockets on A and B with 4009; bob stays; ada goes offline.
      const term = await c.sdk().terminateUserConnections(ada);
      assert.equal(term.status, 200);
      for (const cl of [ada1, ada2]) {
        await poll(() => cl.errors.some((e) => e.data?.code === 4009), `4009 on ${cl.node.id}`);
        await poll(() => cl.connection.state !== 'connected', `ada on ${cl.node.id} disconnected`);
      }
      await atLeast(log, 3, 'ada offline');
      assert.equal(log[2], `offline:${ada}`);
      assert.equal(bobC.connection.state, 'connected');
      const still = record(bobC.user, 'still');
      await a.sdk().sendToUser(bob, 'still', {});
      await atLeast(still, 1, 'bob still reachable');
      await sleep(500); // absence window: pusher-js must not have reconnected ada after 4009
      for (const cl of [ada1, ada2]) assert.notEqual(cl.connection.state, 'connected');
      assert.equal(log.length, 3, `no further watchlist events: ${log}`);
    });

    // ------------------------------------------------------------ 5. node death

    scenario('kill -9 of a node: its members removed once within node_timeout + 5 s, its channels unlisted', async () => {
      const [a, b, c] = nodes;
      const room = uniq('presence-ghosts-');
      const lonely = uniq('lonely-');
      const obs = await connected(a, auth, { member: { user_id: 'obs' } });
      const obsCh = await subscribe(obs, room);
      const split = await connected(b, auth, { member: { user_id: 'split' } });
      const splitCh = await subscribe(split, room);
      const ghost = await connected(c, auth, { member: { user_id: 'ghost' } });
      await subscribe(ghost, room);
      await subscribe(ghost, lonely);
      const split2 = await connected(c, auth, { member: { user_id: 'split' } });
      await subscribe(split2, room);
      await fence(split2);
      for (const ch of [obsCh, splitCh]) {
        await poll(() => memberIds(ch).join() === 'ghost,obs,split', `roster on ${ch.pusher.node.id}`);
      }
      await sleep(300); // let any late member_added land before counting removals
      const removed = [obs, split].map((cl) => memberFrames(cl, room, 'removed'));
      const added = [obs, split].map((cl) => memberFrames(cl, room, 'added'));
      const killedAt = Date.now();
      await c.kill();
      ghost.disconnect();
      split2.disconnect();
      const limit = (NODE_TIMEOUT_S + 5) * 1000;
      await atLeast(removed[0], 1, 'member_removed ghost on A', limit);
      await atLeast(removed[1], 1, 'member_removed ghost on B', limit);
      const took = Date.now() - killedAt;
      await sleep(2000); // absence window: no second removal, split (still on B) kept
      assert.deepEqual(removed, [['ghost'], ['ghost']], `member_removed after ${took} ms`);
      assert.deepEqual(added, [[], []]);
      assert.deepEqual(memberIds(obsCh), ['obs', 'split']);
      for (const node of [a, b]) {
        await poll(async () => {
          const all = await node.get('/channels', { info: 'subscription_count' });
          return !(lonely in all.channels) && all.channels[room]?.subscription_count === 2;
        }, `/channels on ${node.id} without the dead node's subscriptions`);
        assert.deepEqual((await node.get(`/channels/${lonely}`)).occupied, false);
      }
      console.log(`# ${kind}: member_removed ${took} ms after kill -9 (node_timeout ${NODE_TIMEOUT_S} s)`);
    });

    // ------------------------------------------------------------ 6. broker outage

    scenario('broker outage: /ready 503 everywhere, local delivery goes on, nodes recover by themselves', async () => {
      const [a, b, c] = nodes;
      const local = uniq('local-');
      const cross = uniq('cross-');
      const a1 = await subscribe(await connected(a, auth), local);
      const a2 = await subscribe(await connected(a, auth), local);
      const crossChans = [];
      for (const node of [a, b, c]) crossChans.push(await subscribe(await connected(node, auth), cross));
      await awaitRouting(a, crossChans);
      const lateClient = await connected(b, auth);

      const stoppedAt = Date.now();
      await cluster.broker.stop();
      for (const node of nodes) {
        const r = await poll(async () => {
          const got = await node.ready();
          return got.status === 503 ? got : null;
        }, `${node.id} /ready 503`, 15000);
        assert.equal(r.json?.status, 'unavailable', r.text);
        assert.match(r.json?.reason ?? '', /unreachable/, r.text);
      }
      // Local delivery on A goes on.
      const got = [a1, a2].map((ch) => record(ch, 'still'));
      await a.sdk().trigger(local, 'still', { here: true });
      await atLeast(got[0], 1, 'local event on A (1)');
      await atLeast(got[1], 1, 'local event on A (2)');
      // A subscription made during the outage, on B.
      const late = uniq('late-');
      await subscribe(lateClient, late);
      // The outage lasts ~8 s, whatever the checks above took.
      await sleep(Math.max(0, 8000 - (Date.now() - stoppedAt)));
      await cluster.broker.start();
      const restartedAt = Date.now();
      for (const node of nodes) {
        await poll(async () => (await node.ready()).status === 200, `${node.id} /ready 200 again`, 30000);
      }
      const recovered = Date.now() - restartedAt;
      // Cross-node delivery works again, without new subscriptions.
      const after = crossChans.map((ch) => record(ch, 'again'));
      await a.sdk().trigger(cross, 'again', {});
      for (const [i, list] of after.entries()) await atLeast(list, 1, `'again' on ${nodes[i].id}`, 5000);
      // The subscription made during the outage is counted everywhere.
      for (const node of nodes) {
        await poll(async () => (await node.get(`/channels/${late}`, { info: 'subscription_count' })).subscription_count === 1,
          `${late} counted on ${node.id}`);
      }
      console.log(`# ${kind}: all nodes ready ${recovered} ms after the broker restarted`);
    });

    scenario('presence across a short broker outage: rosters converge, one event per change, no flapping', async () => {
      // Fails today, differently each run: after a ~2 s outage (a member left on C and one
      // joined on B meanwhile) subscribers get member_removed twice or not at all,
      // member_added for members who never left (even for themselves), or miss the joiner,
      // so pusher-js rosters end up differing from GET /users for good.
      const [a, b, c] = nodes;
      const room = uniq('presence-blip-');
      const join = async (node, user) => {
        const cl = await connected(node, auth, { member: { user_id: user } });
        return { cl, ch: await subscribe(cl, room), node };
      };
      const stayers = [await join(a, 'obs'), await join(b, 'pb'), await join(c, 'pc')];
      const leaver = await join(c, 'leaver');
      for (const m of stayers) {
        await poll(() => memberIds(m.ch).join() === 'leaver,obs,pb,pc', `roster on ${m.node.id}`);
      }
      await sleep(300); // late member_added frames land before counting
      const frames = stayers.map((m) => ({
        added: memberFrames(m.cl, room, 'added'), removed: memberFrames(m.cl, room, 'removed'),
      }));
      const stoppedAt = Date.now();
      await cluster.broker.stop();
      for (const node of nodes) {
        await poll(async () => (await node.ready()).status === 503, `${node.id} /ready 503`, 15000);
      }
      leaver.cl.disconnect();
      const joiner = await join(b, 'joiner');
      await sleep(Math.max(0, 2000 - (Date.now() - stoppedAt))); // the outage lasts ~2 s
      await cluster.broker.start();
      await cluster.waitReady(30000);
      const expected = ['joiner', 'obs', 'pb', 'pc'];
      for (const node of nodes) {
        await poll(async () => isDeepStrictEqual((await node.get(`/channels/${room}/users`)).users.map((u) => u.id).sort(), expected),
          `GET /users on ${node.id} after the outage`);
      }
      const rosters = () => Object.fromEntries([...stayers, joiner].map((m) => [`${m.node.id}:${m.cl.member.user_id}`, memberIds(m.ch)]));
      await poll(() => Object.values(rosters()).every((r) => isDeepStrictEqual(r, expected)), 'rosters converged', 5000)
        .catch(() => {}); // reported below with everything else
      await sleep(REMOVAL_DELAY_MS); // absence window: no late duplicate or flapping
      const want = Object.fromEntries([...stayers, joiner].map((m) => [`${m.node.id}:${m.cl.member.user_id}`, expected]));
      const once = stayers.map(() => ({ added: ['joiner'], removed: ['leaver'] }));
      const got = { rosters: rosters(), frames };
      assert.deepEqual(got, { rosters: want, frames: once },
        `pusher-js rosters (want ${expected}) and member frames on A, B, C (want +joiner -leaver once each): ${JSON.stringify(got)}`);
    }, { todo: 'known limitation (README, Running a cluster): presence changes made during a broker outage are reconciled by snapshots afterwards and can be announced twice or not at all' });

    // ------------------------------------------------------------ 7. rolling restart

    scenario('rolling restart: a SIGTERMed node\'s client rejoins on B within 3 s; nobody sees it leave', async () => {
      const [a, b, c] = nodes;
      const room = uniq('presence-roll-');
      const member = { user_id: 'mover', user_info: { n: 1 } };
      const obs = await subscribe(await connected(a, auth, { app: HOOK, member: { user_id: 'obs' } }), room);
      const peer = await subscribe(await connected(b, auth, { app: HOOK, member: { user_id: 'peer' } }), room);
      const mover = await connected(c, auth, { app: HOOK, member });
      await subscribe(mover, room);
      for (const ch of [obs, peer]) {
        await poll(() => memberIds(ch).join() === 'mover,obs,peer', `roster on ${ch.pusher.node.id}`);
      }
      await sink.until((s) => s.on(room).filter((e) => e.name === 'member_added').length === 3, 8000, 'three member_added webhooks');
      await sleep(300); // late member_added frames land before counting
      const events = [obs, peer].map((ch) => ({
        added: memberFrames(ch.pusher, room, 'added'), removed: memberFrames(ch.pusher, room, 'removed'),
      }));
      const hooksBefore = sink.on(room).length;

      // The mover's app moves it to B when C says 4200 (reconnect) or the socket drops.
      let told;
      const moved = (async () => {
        await leftNode(mover, 15000);
        told = Date.now();
        mover.disconnect();
        const again = await connected(b, auth, { app: HOOK, member });
        await subscribe(again, room);
        return Date.now() - told;
      })();
      const stopping = c.term();
      const tookMs = await moved;
      const exit = await stopping;
      assert.ok(tookMs < 3000, `rejoined on B ${tookMs} ms after C asked it to leave`);
      assert.ok(mover.errors.some((e) => e.data?.code >= 4200 && e.data?.code < 4300),
        `pusher:error 42xx before the close: ${JSON.stringify(mover.errors)}`);
      // Absence window: past the removal delay and node_timeout, no departure was announced.
      await sleep(REMOVAL_DELAY_MS + NODE_TIMEOUT_S * 1000 + 500);
      const none = { added: [], removed: [] };
      assert.deepEqual(events, [none, none], 'member frames seen on A and B');
      assert.deepEqual(memberIds(obs), ['mover', 'obs', 'peer']);
      for (const node of [a, b]) {
        const users = (await node.get(`/channels/${room}/users`, {}, HOOK)).users.map((u) => u.id).sort();
        assert.deepEqual(users, ['mover', 'obs', 'peer'], `users on ${node.id}`);
      }
      assert.deepEqual(sink.on(room).slice(hooksBefore), [], 'no webhooks for the move');
      console.log(`# ${kind}: rejoined ${tookMs} ms after 42xx; node exited ${JSON.stringify(exit)}`);
    });

    // ------------------------------------------------------------ 8. webhooks

    scenario('webhooks: one per transition cluster-wide; a user moving between nodes within 3 s causes none', async () => {
      const [a, b, c] = nodes;
      const room = uniq('presence-wh-');
      const as = (node, user) => connected(node, auth, { app: HOOK, member: { user_id: user } });
      const kinds = () => sink.on(room).map((e) => `${e.name}${e.user_id ? `:${e.user_id}` : ''}`);
      const u1 = await as(a, 'u1');
      await subscribe(u1, room);
      await sink.until(() => kinds().includes('member_added:u1') && kinds().includes('channel_occupied'), 8000, 'occupied + u1 added');
      const u2b = await as(b, 'u2');
      await subscribe(u2b, room);
      const u2c = await as(c, 'u2');
      await subscribe(u2c, room);
      await sink.until(() => kinds().includes('member_added:u2'), 8000, 'u2 added');
      // u2 leaves B (still on C), then C: one member_removed, after the removal delay.
      u2b.disconnect();
      await poll(async () => (await a.get(`/channels/${room}`, { info: 'subscription_count' }, HOOK)).subscription_count === 2,
        'u2\'s socket on B gone');
      u2c.disconnect();
      await poll(async () => (await a.get(`/channels/${room}`, { info: 'subscription_count' }, HOOK)).subscription_count === 1,
        'u2 gone');
      // u1 moves from A to C at once: the channel is empty for a moment, u1 gone for a moment.
      const movedAt = Date.now();
      u1.disconnect();
      await subscribe(await as(c, 'u1'), room);
      assert.ok(Date.now() - movedAt < REMOVAL_DELAY_MS, `moved in ${Date.now() - movedAt} ms`);
      await sink.until(() => kinds().includes('member_removed:u2'), 10000, 'u2 removed');
      // Absence window: past the removal delay since the move, plus delivery slack.
      await sleep(Math.max(0, REMOVAL_DELAY_MS + 1500 - (Date.now() - movedAt)));
      const counted = (list) => Object.fromEntries([...new Set(list)].map((k) => [k, count(list, k)]));
      assert.deepEqual(counted(kinds()), {
        channel_occupied: 1, 'member_added:u1': 1, 'member_added:u2': 1, 'member_removed:u2': 1,
      });
      // u1 leaves for good: member_removed and channel_vacated, once each.
      await closeClients();
      await sink.until(() => kinds().includes('channel_vacated') && kinds().includes('member_removed:u1'), 10000, 'vacated + u1 removed');
      await sleep(1000); // absence window: no duplicate from another node
      assert.deepEqual(counted(kinds()), {
        channel_occupied: 1, 'member_added:u1': 1, 'member_added:u2': 1, 'member_removed:u2': 1,
        'member_removed:u1': 1, channel_vacated: 1,
      });
      const ids = sink.on(room).map((e) => e.id);
      assert.equal(new Set(ids).size, ids.length, 'unique webhook ids');
    });
  });
}
