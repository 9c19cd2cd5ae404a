"""Push notifications when endpoints misbehave, and across a crash (docs/PROTOCOL.md, "Push
notifications", "Reliability" and "Which endpoints"): retries with back-off, Retry-After on
429 and 503, targets removed on 404 and 410, redirects never followed, an endpoint that
hangs does not hold up the others, and a node killed with pushes pending sends them after
it starts again, once.

Written from the protocol document only; helpers in test_push.PushCase, the receiving end
(and the endpoint that never answers) in pushrecv.py. Timing is asserted only as lower
bounds with slack (Retry-After); everything else is waited for with generous deadlines.
"""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from pushrecv import DeadEndpoint, Reply, Subscription  # noqa: E402
from stubdns import StubDns  # noqa: E402
from harness import toml_text  # noqa: E402
from test_push import QUIET_S, WAIT_S, PushCase  # noqa: E402

SLACK_S = 0.3


class RetryTest(PushCase):

    def test_a_failing_push_is_retried_until_it_succeeds(self):
        self.start()
        recv = self.receiver()
        key = self.vapid_key()
        alice, bob = self.person("alice"), self.person("bob")
        _, sub, path = self.webpush(bob.login("phone"), recv)
        recv.script(path, [Reply(500), Reply(500, json={"error": "later"})])
        retry0 = self.metric("petchat_push_sent_total", kind="webpush", result="retry")
        ok0 = self.metric("petchat_push_sent_total", kind="webpush", result="ok")
        acc = self.ws(alice.login()).send_message(bob.id, "third time lucky")
        reqs = recv.wait_requests(path, 3, WAIT_S, answered=True)
        self.assertEqual([r.status for r in reqs[:3]], [500, 500, 201])
        for r in reqs[:3]:
            n = self.open_webpush(r, sub, key, recv)
            self.assertNotification(n, bob.id, alice.id, acc, count=1)
        recv.assert_quiet(path, QUIET_S)
        self.assertEqual(recv.count(path), 3, "nothing more once it succeeded")
        self.wait_metric("petchat_push_sent_total", retry0 + 2, kind="webpush", result="retry")
        self.wait_metric("petchat_push_sent_total", ok0 + 1, kind="webpush", result="ok")

    def test_a_message_before_a_thousand_other_events_is_still_pushed(self):
        # While the push waits (a Retry-After), more than a thousand events that tell
        # nothing (bob's own messages on another device) come after alice's message: the
        # push still names it, instead of being let go.
        self.start()
        recv = self.receiver()
        alice, bob, carol = self.person("alice"), self.person("bob"), self.person("carol")
        _, sub, path = self.webpush(bob.login("phone"), recv)
        key = self.vapid_key()
        recv.script(path, [Reply(503, headers={"Retry-After": "15"})])
        acc = self.ws(alice.login()).send_message(bob.id, "do not lose me")
        recv.wait_requests(path, 1, WAIT_S, answered=True)
        laptop = self.ws(bob.login("laptop"))
        for i in range(1100):
            laptop.send_async(carol.id, "chatter %d" % i)
        laptop.wait_until(lambda: len([f for f in laptop.frames() if "accepted" in f]) >= 1100, 60,
                          what="1,100 acceptances")
        self.assertEqual(recv.count(path), 1, "the 1,100 events are all stored before the retry (else this shows "
                                              "nothing: the sends took longer than the Retry-After)")
        r = recv.wait_requests(path, 2, WAIT_S + 15, answered=True)[1]
        n = self.open_webpush(r, sub, key, recv)
        self.assertNotification(n, bob.id, alice.id, acc, count=1)

    def test_retry_after_is_honoured_on_429_and_503(self):
        self.start()
        recv = self.receiver()
        alice, bob = self.person("alice"), self.person("bob")
        _, _, path_429 = self.webpush(bob.login("phone"), recv)
        _, _, path_503 = self.webpush(bob.login("laptop"), recv, kind="unifiedpush")
        recv.script(path_429, [Reply(429, headers={"Retry-After": "2"})])
        recv.script(path_503, [Reply(503, headers={"Retry-After": "3"})])
        self.ws(alice.login()).send_message(bob.id, "not so fast")
        for path, wait_s in ((path_429, 2), (path_503, 3)):
            r0, r1 = recv.wait_requests(path, 2, WAIT_S)[:2]
            self.assertGreaterEqual(r1.t - r0.t, wait_s - SLACK_S,
                                    "the retry on %s came %.2f s after a Retry-After of %d s" % (path, r1.t - r0.t, wait_s))

    def test_gone_endpoints_are_removed(self):
        self.start()
        recv = self.receiver()
        alice, bob = self.person("alice"), self.person("bob")
        phone, laptop, tablet = bob.login("phone"), bob.login("laptop"), bob.login("tablet")
        t410, _, path_410 = self.webpush(phone, recv)
        t404, _, path_404 = self.webpush(laptop, recv, kind="unifiedpush")
        _, _, path_ok = self.webpush(tablet, recv)
        recv.script(path_410, then=Reply(410))
        recv.script(path_404, then=Reply(404))
        removed0 = self.metric("petchat_push_targets_removed_total", reason="gone")
        gone0 = self.metric("petchat_push_sent_total", result="gone")
        a = self.ws(alice.login())
        a.send_message(bob.id, "anyone there?")
        recv.wait_requests(path_410, 1, WAIT_S)
        recv.wait_requests(path_404, 1, WAIT_S)
        recv.wait_requests(path_ok, 1, WAIT_S)
        self.wait_target_gone(phone, t410["id"])
        self.wait_target_gone(laptop, t404["id"])
        self.assertEqual(len(self.targets(tablet)), 1, "the healthy target stays")
        self.wait_metric("petchat_push_targets_removed_total", removed0 + 2, reason="gone")
        self.wait_metric("petchat_push_sent_total", gone0 + 2, result="gone")
        self.assertNotIn(t410["id"], [t["id"] for t in self.admin_targets(bob.name)])
        a.send_message(bob.id, "still nobody?")
        recv.wait_requests(path_ok, 2, WAIT_S)
        recv.assert_quiet(path_410, QUIET_S, already=1)
        self.assertEqual(recv.count(path_404), 1, "a removed target is never pushed again")

    def test_redirects_are_not_followed(self):
        self.start()
        recv = self.receiver()
        alice, bob = self.person("alice"), self.person("bob")
        s = bob.login("phone")
        t, _, path = self.webpush(s, recv)
        elsewhere = "/wp/elsewhere"
        recv.script(path, then=Reply(302, headers={"Location": recv.url(elsewhere)}))
        failed0 = self.metric("petchat_push_sent_total", kind="webpush", result="failed")
        self.ws(alice.login()).send_message(bob.id, "follow me")
        recv.wait_requests(path, 1, WAIT_S)
        self.wait_metric("petchat_push_sent_total", failed0 + 1, kind="webpush", result="failed")
        recv.assert_quiet(None, QUIET_S, already=1)
        self.assertEqual(recv.count(elsewhere), 0, "the redirect's target got nothing")
        self.assertEqual(recv.count(path), 1, "a redirect is a failure for good: not retried")

    def test_an_endpoint_that_always_refuses_gets_no_more_than_the_coalescing_window_allows(self):
        # Refused for good is not retried, and the next message's push still waits for the
        # window: the node is no amplifier of one request per message against a host.
        window = 3.0
        self.start(push={"coalesce_ms": int(window * 1000)})
        recv = self.receiver()
        alice, bob = self.person("alice"), self.person("bob")
        _, _, path = self.webpush(bob.login("phone"), recv)
        recv.script(path, then=Reply(400))
        a = self.ws(alice.login())
        a.send_message(bob.id, "first")
        recv.wait_requests(path, 1, WAIT_S, answered=True)
        for i in range(5):  # spread out, each would be pushed at once were it not for the window
            a.send_message(bob.id, "more %d" % i)
            time.sleep(0.3)
        first, second = recv.wait_requests(path, 2, WAIT_S)[:2]
        recv.assert_quiet(path, QUIET_S, already=2)
        self.assertEqual(recv.count(path), 2, "one push for the first message, one for the five after it")
        self.assertGreaterEqual(second.t - first.t, window - SLACK_S, "at most one push per coalesce_ms")

    def test_an_endpoint_that_refuses_ten_pushes_in_a_row_loses_its_target(self):
        # A lost VAPID key, or a gateway that no longer knows the app: refused for good every
        # time. Before, the target stayed for ever (one request and one warning per message).
        # Removed after 10 refusals in a row spanning push.give_up_s (here 1 s), however
        # often the app registers it again as it was (at every start).
        self.start(push={"coalesce_ms": 0, "give_up_s": 1})
        recv = self.receiver()
        alice, bob = self.person("alice"), self.person("bob")
        phone, tablet = bob.login("phone"), bob.login("tablet")
        refusing, sub, path = self.webpush(phone, recv)
        _, _, path_ok = self.webpush(tablet, recv)
        recv.script(path, then=Reply(403))
        removed0 = self.metric("petchat_push_targets_removed_total", reason="refused")
        a = self.ws(alice.login())
        for i in range(10):  # one push each, each refused (and each answered before the next)
            a.send_message(bob.id, "knock %d" % i)
            recv.wait_requests(path, i + 1, WAIT_S, answered=True)
            recv.wait_requests(path_ok, i + 1, WAIT_S, answered=True)
            if i == 0:
                time.sleep(1.2)  # so that the ten span give_up_s
            if i == 4:  # the app starts again: the run of refusals goes on
                self.assertEqual(self.webpush(phone, recv, path=path, sub=sub)[0]["id"], refusing["id"])
            if i == 8:  # nine refusals over more than give_up_s are not enough
                self.assertIn(refusing["id"], [t["id"] for t in self.targets(phone)])
        self.wait_target_gone(phone, refusing["id"])
        self.wait_metric("petchat_push_targets_removed_total", removed0 + 1, reason="refused")
        self.assertEqual(len(self.targets(tablet)), 1, "the healthy target stays")
        a.send_message(bob.id, "anyone?")
        recv.wait_requests(path_ok, 11, WAIT_S)
        recv.assert_quiet(path, QUIET_S, already=10)

    def test_a_target_at_an_address_no_longer_allowed_goes_as_a_refusing_one_does(self):
        # Registered while 127.0.0.0/8 was allowed; the operator drops the allow list: the
        # literal address (and its port) is refused before any request, for good. Before,
        # such refusals were never counted: the target stayed for ever, one refused push
        # per message.
        node = self.start(push={"coalesce_ms": 0, "give_up_s": 1})
        recv = self.receiver()
        alice, bob = self.person("alice"), self.person("bob")
        phone = bob.login("phone")
        target, _, path = self.webpush(phone, recv)
        node.config["push"]["allow_networks"] = []
        with open(node.config_path, "w") as f:
            f.write(toml_text(node.config))
        node.restart()
        failed0 = self.metric("petchat_push_sent_total", kind="webpush", result="failed")
        removed0 = self.metric("petchat_push_targets_removed_total", reason="refused")
        a = self.ws(alice.login())
        for i in range(10):  # one refused push each
            a.send_message(bob.id, "knock %d" % i)
            self.wait_metric("petchat_push_sent_total", failed0 + i + 1, kind="webpush", result="failed")
            if i == 0:
                time.sleep(1.2)  # so that the ten span give_up_s
        self.wait_target_gone(phone, target["id"])
        self.wait_metric("petchat_push_targets_removed_total", removed0 + 1, reason="refused")
        self.assertEqual(recv.count(path), 0, "no request ever went out")

    def test_a_target_failing_past_give_up_drops_its_push_and_takes_the_next(self):
        self.start(push={"give_up_s": 1, "retry_initial_ms": 200, "retry_max_ms": 400})
        recv = self.receiver()
        key = self.vapid_key()
        alice, bob = self.person("alice"), self.person("bob")
        _, sub, path = self.webpush(bob.login("phone"), recv)
        recv.script(path, then=Reply(503))
        dropped0 = self.metric("petchat_push_sent_total", kind="webpush", result="dropped")
        a = self.ws(alice.login())
        a.send_message(bob.id, "never arrives")
        recv.wait_requests(path, 2, WAIT_S, answered=True)  # tried, and tried again
        self.wait_metric("petchat_push_sent_total", dropped0 + 1, kind="webpush", result="dropped")
        tries = recv.count(path)
        recv.assert_quiet(path, QUIET_S, already=tries)  # given up: no more tries
        recv.script(path)  # 201 from now on
        acc = a.send_message(bob.id, "the next one")
        reqs = recv.wait_requests(path, tries + 1, WAIT_S)
        n = self.open_webpush(reqs[-1], sub, key, recv)
        self.assertNotification(n, bob.id, alice.id, acc, count=1)

class EndlessAnswerTest(PushCase):

    def test_an_endless_answer_is_cut_off_not_taken_whole(self):
        # A user's own endpoint answers with a chunk whose extension never ends, or a trailer
        # that never ends: neither is body nor header to the parser's limits, and the node
        # took it all into memory for as long as the answer's timeout let it.
        self.start(push={"response_timeout_ms": 20000})
        recv = self.receiver()
        alice, bob = self.person("alice"), self.person("bob")
        total = 256 << 20
        heads = (b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n1;",
                 b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-Pad: ")
        paths = []
        for i, head in enumerate(heads):
            _, _, path = self.webpush(bob.login("device%d" % i), recv)
            recv.script(path, [Reply(flood=(head, b"a" * 65536, total))])
            paths.append(path)
        self.ws(alice.login()).send_message(bob.id, "answer me, at length")
        for path in paths:
            [req] = recv.wait_requests(path, 1, WAIT_S, answered=True)[:1]
            self.assertLess(req.flooded, 16 << 20, "the node hung up on %s after a bounded answer" % path)
        self.assertStatus(self.call("GET", "/readyz"), 200)


class DeadEndpointTest(PushCase):

    def wait_push_counts(self, in_flight, slow):
        """Waits until the admin API counts `in_flight` requests on the wire, `slow` of them
        holding no ordinary slot."""
        deadline = time.monotonic() + WAIT_S
        while True:
            status = self.node.admin("GET", "/v1/admin/push").json
            if (status.get("in_flight"), status.get("slow_in_flight")) == (in_flight, slow):
                return
            self.assertLess(time.monotonic(), deadline, status)
            time.sleep(0.2)

    def test_an_endpoint_that_never_answers_holds_up_no_one(self):
        # The hung connection outlasts every wait below: only pushes made beside it can
        # arrive in time.
        self.start(push={"connect_timeout_ms": 60000, "response_timeout_ms": 60000})
        recv = self.receiver()
        dead = DeadEndpoint()
        self.addCleanup(dead.close)
        key = self.vapid_key()
        alice, bob, carol = self.person("alice"), self.person("bob"), self.person("carol")
        r = self.add_target(bob.login("phone"), {"kind": "webpush", "endpoint": dead.url("/wp/dead"),
                                                 "keys": Subscription().keys()})
        self.assertStatus(r, 201)
        _, sub_b, path_b = self.webpush(bob.login("laptop"), recv)
        _, sub_c, path_c = self.webpush(carol.login("phone"), recv)
        a = self.ws(alice.login())
        to_bob = a.send_message(bob.id, "one of your devices is stuck")
        dead.wait_accepted(1, WAIT_S)
        n = self.open_webpush(recv.wait_requests(path_b, 1, WAIT_S)[0], sub_b, key, recv)
        self.assertNotification(n, bob.id, alice.id, to_bob)
        to_carol = a.send_message(carol.id, "hello carol")
        n = self.open_webpush(recv.wait_requests(path_c, 1, WAIT_S)[0], sub_c, key, recv)
        self.assertNotification(n, carol.id, alice.id, to_carol)
        self.assertGreaterEqual(dead.open_connections(), 1, "the dead endpoint's connection is still open")
        self.node.stop()  # nor does it hold up the node's shutdown (exit 0 within 5 s of SIGTERM)

    def test_one_users_endpoints_that_never_answer_do_not_take_every_slot(self):
        # bob has more dead targets than the node has slots; one user may hold only
        # max_in_flight_per_user of them, so carol's push still goes out at once.
        self.start(push={"connect_timeout_ms": 60000, "response_timeout_ms": 60000, "max_in_flight": 4,
                         "max_in_flight_per_user": 2})
        recv = self.receiver()
        dead = DeadEndpoint()
        self.addCleanup(dead.close)
        key = self.vapid_key()
        alice, bob, carol = self.person("alice"), self.person("bob"), self.person("carol")
        for device in ("phone", "laptop", "tablet"):
            s = bob.login(device)
            for i in range(2):
                r = self.add_target(s, {"kind": "webpush", "endpoint": dead.url("/wp/%s%d" % (device, i)),
                                        "keys": Subscription().keys()})
                self.assertStatus(r, 201)
        _, sub_c, path_c = self.webpush(carol.login("phone"), recv)
        a = self.ws(alice.login())
        a.send_message(bob.id, "all of your devices are stuck")
        dead.wait_accepted(2, WAIT_S)
        to_carol = a.send_message(carol.id, "hello carol")
        n = self.open_webpush(recv.wait_requests(path_c, 1, WAIT_S)[0], sub_c, key, recv)
        self.assertNotification(n, carol.id, alice.id, to_carol)
        deadline = time.monotonic() + WAIT_S
        while self.node.admin("GET", "/v1/admin/push").json.get("in_flight") != 2:  # carol's is done
            self.assertLess(time.monotonic(), deadline, "bob's six dead targets hold two slots, no more")
            time.sleep(0.2)
        self.assertEqual(dead.open_connections(), 2, "two of bob's dead endpoints were tried")


    def test_endpoints_that_never_answer_give_their_slots_back_to_prompt_ones(self):
        # Two accounts' dead targets take every slot (two each); unanswered after
        # slow_after_ms, they give their slots back, so carol's push goes out long before
        # they time out.
        self.start(push={"connect_timeout_ms": 60000, "response_timeout_ms": 60000, "max_in_flight": 4,
                         "max_in_flight_per_user": 2, "slow_after_ms": 1000})
        recv = self.receiver()
        key = self.vapid_key()
        alice, carol = self.person("alice"), self.person("carol")
        stuck = []
        for name, host in (("bob", "127.0.0.2"), ("dave", "127.0.0.3")):  # not the receiver's host
            dead = DeadEndpoint(host)
            self.addCleanup(dead.close)
            p = self.person(name)
            for device in ("phone", "laptop"):
                r = self.add_target(p.login(device), {"kind": "webpush", "endpoint": dead.url("/wp/%s" % device),
                                                      "keys": Subscription().keys()})
                self.assertStatus(r, 201)
            stuck.append((p, dead))
        _, sub_c, path_c = self.webpush(carol.login("phone"), recv)
        a = self.ws(alice.login())
        for p, _ in stuck:
            a.send_message(p.id, "all of your devices are stuck")
        for _, dead in stuck:
            dead.wait_accepted(2, WAIT_S)
        to_carol = a.send_message(carol.id, "hello carol")
        n = self.open_webpush(recv.wait_requests(path_c, 1, WAIT_S)[0], sub_c, key, recv)
        self.assertNotification(n, carol.id, alice.id, to_carol)
        self.wait_push_counts(4, 4)  # carol's is done; the four dead ones gave their slots back

    def test_a_host_that_answered_nothing_shares_the_few_slots_of_such_hosts(self):
        # bob's three targets at one dead host time out (no answer at all): their retries
        # then take the one slot unresponsive hosts share (max_in_flight 8 / 8), one at a
        # time, while carol is pushed as usual.
        self.start(push={"connect_timeout_ms": 1000, "response_timeout_ms": 1500, "max_in_flight": 8,
                         "max_in_flight_per_user": 8, "slow_after_ms": 500})
        recv = self.receiver()
        dead = DeadEndpoint("127.0.0.2")
        self.addCleanup(dead.close)
        key = self.vapid_key()
        alice, bob, carol = self.person("alice"), self.person("bob"), self.person("carol")
        s = bob.login("phone")
        for i in range(3):
            r = self.add_target(s, {"kind": "webpush", "endpoint": dead.url("/wp/%d" % i), "keys": Subscription().keys()})
            self.assertStatus(r, 201)
        _, sub_c, path_c = self.webpush(carol.login("phone"), recv)
        a = self.ws(alice.login())
        a.send_message(bob.id, "your endpoint is dead")
        dead.wait_accepted(3, WAIT_S)  # the first three at once, as prompt pushes
        dead.wait_accepted(5, WAIT_S)  # two retries: the host has answered nothing by then
        time.sleep(0.5)
        seen = []
        until = time.monotonic() + 3
        while time.monotonic() < until:
            status = self.node.admin("GET", "/v1/admin/push").json
            seen.append((status["in_flight"], status["slow_in_flight"]))
            time.sleep(0.05)
        self.assertLessEqual(max(f for f, _ in seen), 1, "bob's retries wait for the one slot: %s" % seen)
        self.assertIn((1, 1), seen)
        to_carol = a.send_message(carol.id, "hello carol")
        n = self.open_webpush(recv.wait_requests(path_c, 1, WAIT_S)[0], sub_c, key, recv)
        self.assertNotification(n, carol.id, alice.id, to_carol)

    def test_a_slow_endpoint_that_answers_in_the_end_is_pushed(self):
        # An endpoint slower than slow_after_ms is still pushed (its slot given back to
        # prompt pushes meanwhile), and so is the next one (an answer, however late, keeps
        # its host off the unresponsive list); both slots are given back.
        self.start(push={"slow_after_ms": 200})
        recv = self.receiver()
        key = self.vapid_key()
        alice, bob = self.person("alice"), self.person("bob")
        _, sub_b, path_b = self.webpush(bob.login("phone"), recv)
        recv.script(path_b, [Reply(201, delay=1.0), Reply(201, delay=1.0)])
        a = self.ws(alice.login())
        first = a.send_message(bob.id, "slowly")
        n = self.open_webpush(recv.wait_requests(path_b, 1, WAIT_S)[0], sub_b, key, recv)
        self.assertNotification(n, bob.id, alice.id, first)
        second = a.send_message(bob.id, "and again")
        n = self.open_webpush(recv.wait_requests(path_b, 2, WAIT_S)[1], sub_b, key, recv)
        self.assertNotification(n, bob.id, alice.id, second)
        self.wait_push_counts(0, 0)


class DeadNameserverTest(PushCase):

    def test_a_name_that_never_resolves_holds_up_no_one(self):
        # bob's endpoint is a name whose nameserver stops answering; the lookup's deadline
        # (connect_timeout_ms) outlasts every wait below.
        dns = StubDns({"slow.push.test": "127.0.0.1", "fast.push.test": "127.0.0.1"})
        self.addCleanup(dns.close)
        self.start(push={"nameservers": [dns.nameserver], "connect_timeout_ms": 60000})
        recv = self.receiver()
        key = self.vapid_key()
        alice, bob, carol = self.person("alice"), self.person("bob"), self.person("carol")
        _, sub_b, path_b = self.webpush(bob.login("phone"), recv, host="slow.push.test")
        dns.stall("slow.push.test")
        a = self.ws(alice.login())
        to_bob = a.send_message(bob.id, "your nameserver is down")
        dns.wait_query("slow.push.test", 1, WAIT_S, answered=False)
        # While bob's lookup hangs, carol registers (a lookup too) and is pushed.
        _, sub_c, path_c = self.webpush(carol.login("phone"), recv, host="fast.push.test")
        to_carol = a.send_message(carol.id, "hello carol")
        n = self.open_webpush(recv.wait_requests(path_c, 1, WAIT_S)[0], sub_c, key, "https://fast.push.test:%d" % recv.port)
        self.assertNotification(n, carol.id, alice.id, to_carol)
        self.assertEqual(recv.requests(path_b), [], "bob's push waits for its name")
        # The nameserver answers again: bob's push arrives (c-ares asks again, or the push
        # is tried again).
        dns.release("slow.push.test")
        n = self.open_webpush(recv.wait_requests(path_b, 1, WAIT_S)[0], sub_b, key, "https://slow.push.test:%d" % recv.port)
        self.assertNotification(n, bob.id, alice.id, to_bob)

    def test_an_unknown_name_is_refused_at_registration(self):
        dns = StubDns({})
        self.addCleanup(dns.close)
        self.start(push={"nameservers": [dns.nameserver]})
        r = self.add_target(self.person("bob").login("phone"), {"kind": "webpush", "keys": Subscription().keys(),
                                                               "endpoint": "https://nowhere.push.test/wp"})
        self.assertError(r, 400, "push_endpoint_forbidden")
        self.assertIn("nowhere.push.test", r.json["error"]["message"])
        dns.wait_query("nowhere.push.test", 1, WAIT_S, answered=True)


class RestartTest(PushCase):

    def wait_failure_written(self, name):
        """Waits until one of `name`'s targets has a failure written down (the store's, not
        only the notification service's memory)."""
        deadline = time.monotonic() + WAIT_S
        while not any(t["failures"] >= 1 for t in self.admin_targets(name)):
            self.assertLess(time.monotonic(), deadline, "the failure was never written")
            time.sleep(0.05)

    def test_a_retry_after_outlives_a_restart(self):
        # Before, the wait was kept in memory only: a restart (or a crash loop) retried at
        # once, against a push service's 429.
        wait_s = 8
        node = self.start()
        recv = self.receiver()
        alice, bob = self.person("alice"), self.person("bob")
        _, _, path = self.webpush(bob.login("phone"), recv)
        recv.script(path, [Reply(429, headers={"Retry-After": str(wait_s)})])
        self.ws(alice.login()).send_message(bob.id, "not now")
        first = recv.wait_requests(path, 1, WAIT_S, answered=True)[0]
        self.wait_failure_written(bob.name)
        node.kill9()
        node.start()
        second = recv.wait_requests(path, 2, WAIT_S + wait_s)[1]
        self.assertGreaterEqual(second.t - first.t, wait_s - SLACK_S,
                                "retried %.2f s after a Retry-After of %d s, across a restart" % (second.t - first.t, wait_s))

    def test_registering_again_keeps_how_the_target_fared(self):
        # An app registers its target at every start: that must not wipe its failures (a
        # target that always fails would never be given up) nor end its Retry-After.
        wait_s = 8
        self.start()
        recv = self.receiver()
        alice, bob = self.person("alice"), self.person("bob")
        phone = bob.login("phone")
        _, sub, path = self.webpush(phone, recv)
        recv.script(path, [Reply(429, headers={"Retry-After": str(wait_s)})])
        self.ws(alice.login()).send_message(bob.id, "not now")
        first = recv.wait_requests(path, 1, WAIT_S, answered=True)[0]
        self.wait_failure_written(bob.name)
        # The same registration again (the app took what was pending itself: a target
        # registered anew is pushed what comes after).
        self.webpush(phone, recv, path=path, sub=sub)
        self.assertEqual([t["failures"] for t in self.admin_targets(bob.name)], [1], "kept across the registration")
        self.ws(alice.login()).send_message(bob.id, "after the registration")
        second = recv.wait_requests(path, 2, WAIT_S + wait_s)[1]
        self.assertGreaterEqual(second.t - first.t, wait_s - SLACK_S, "the Retry-After stands")
        # New keys are a new start.
        self.webpush(phone, recv, path=path, sub=Subscription())
        self.assertEqual([t["failures"] for t in self.admin_targets(bob.name)], [0])

    def test_a_pushkey_moved_to_another_gateway_starts_afresh(self):
        # The same Matrix app and pushkey registered at a new gateway (the app moved off a
        # broken one): the old gateway's failures and Retry-After are not the new one's.
        wait_s = 60
        self.start()
        recv = self.receiver()
        alice, bob = self.person("alice"), self.person("bob")
        phone = bob.login("phone")
        _, pushkey, old = self.matrix(phone, recv, data={"a": 1, "b": {"y": 2, "x": 3}})
        recv.script(old, [Reply(429, headers={"Retry-After": str(wait_s)})])
        A = self.ws(alice.login())
        A.send_message(bob.id, "to the broken gateway")
        recv.wait_requests(old, 1, WAIT_S, answered=True)
        self.wait_failure_written(bob.name)
        # The same data with its keys in another order is the same registration.
        self.matrix(phone, recv, path=old, pushkey=pushkey, data={"b": {"x": 3, "y": 2}, "a": 1})
        self.assertEqual([t["failures"] for t in self.admin_targets(bob.name)], [1], "registered again as it was")
        target, _, new = self.matrix(phone, recv, pushkey=pushkey)
        self.assertEqual([t["failures"] for t in self.admin_targets(bob.name)], [0], "a new start")
        A.send_message(bob.id, "to the new gateway")
        pushed = recv.wait_requests(new, 1, WAIT_S)[0]  # not after the old gateway's minute
        self.assertEqual(pushed.json()["notification"]["devices"][0]["pushkey"], pushkey)
        self.assertEqual(len(recv.requests(old)), 1, "nothing more to the old gateway")

    def test_an_old_gateways_answer_does_not_remove_the_pushkey_moved_since(self):
        # The old gateway rejects the pushkey (the app left it) while the app registers the
        # pushkey at a new one: that answer was about the old registration.
        self.start()
        recv = self.receiver()
        alice, bob = self.person("alice"), self.person("bob")
        phone = bob.login("phone")
        target, pushkey, old = self.matrix(phone, recv)
        recv.script(old, [Reply(200, json={"rejected": [pushkey]}, delay=3.0)])
        A = self.ws(alice.login())
        A.send_message(bob.id, "to the old gateway")
        recv.wait_requests(old, 1, WAIT_S)  # on its way, not answered yet
        moved, _, new = self.matrix(phone, recv, pushkey=pushkey)
        self.assertEqual(moved["id"], target["id"])
        recv.wait_requests(old, 1, WAIT_S, answered=True)
        A.send_message(bob.id, "to the new gateway")
        pushed = recv.wait_requests(new, 1, WAIT_S)[0]  # (the old code had removed the target)
        self.assertEqual(pushed.json()["notification"]["devices"][0]["pushkey"], pushkey)
        self.assertEqual([t["id"] for t in self.targets(phone)], [target["id"]], "the moved pushkey stays")
        self.assertEqual(len(recv.requests(old)), 1, "nothing more to the old gateway")

    def test_a_push_pending_longer_than_give_up_s_is_dropped_not_sent_late(self):
        # The node is down (or push is off) for longer than a push may be late: what was
        # pending is news of then, not a notification now.
        node = self.start(push={"coalesce_ms": 10000, "give_up_s": 3})
        recv = self.receiver()
        alice, bob = self.person("alice"), self.person("bob")
        _, _, path = self.webpush(bob.login("phone"), recv)
        A = self.ws(alice.login())
        A.send_message(bob.id, "the first, pushed at once")
        recv.wait_requests(path, 1, WAIT_S, answered=True)
        A.send_message(bob.id, "the second, waiting for the coalescing window")
        node.stop()
        time.sleep(17)  # past give_up_s, and past the coalescing window, live delay and 5 s
        node.start()
        self.wait_metric("petchat_push_sent_total", 1, kind="webpush", result="dropped")
        recv.assert_quiet(path, 2, already=1)

    def test_pending_pushes_survive_kill9_and_none_is_sent_twice(self):
        window_ms = 5000
        node = self.start(push={"coalesce_ms": window_ms})
        recv = self.receiver()
        key = self.vapid_key()
        alice = self.person("alice")
        failing = {}
        for base in ("bob", "carol", "dave"):
            p = self.person(base)
            _, sub, path = self.webpush(p.login("phone"), recv)
            recv.script(path, then=Reply(503))
            failing[p.id] = (p, sub, path)
        erin = self.person("erin")
        _, sub_e, path_e = self.webpush(erin.login("phone"), recv)
        a = self.ws(alice.login())
        sent = {uid: a.send_message(uid, "before the crash") for uid in failing}
        a.send_message(erin.id, "before the crash, delivered")
        for uid, (_, _, path) in failing.items():
            recv.wait_requests(path, 1, WAIT_S, answered=True)
        self.assertEqual(recv.wait_requests(path_e, 1, WAIT_S, answered=True)[0].status, 201)
        st = self.admin_push()
        self.assertGreaterEqual(st["outbox"]["users"], 1, "pushes are pending: %s" % st)

        node.kill9()
        a.close()
        old = {id(r) for r in recv.requests()}
        for _, _, path in failing.values():
            recv.script(path)  # 201 from now on
        node.start()
        for uid, (p, sub, path) in failing.items():
            req = recv.wait_for(lambda r: r.path == path and r.status == 201 and id(r) not in old,
                                WAIT_S + window_ms / 1000.0, "%s's push after the restart" % uid)
            n = self.open_webpush(req, sub, key, recv)
            self.assertNotification(n, uid, alice.id, sent[uid], count=1)
        # Erin's push arrived before the crash, but the kill may have come before the node
        # wrote that down: delivery is at least once. What the node promises is that it is
        # then not repeated within the coalescing window (it wrote down the attempt first).
        time.sleep(QUIET_S)
        others = [r for r in recv.requests() if id(r) not in old and r.path != path_e]
        self.assertEqual(len(others), len(failing), "one push per pending user after the restart: %s" % others)
        for uid, (_, _, path) in failing.items():
            delivered = [r for r in recv.requests(path) if r.status == 201]
            self.assertEqual(len(delivered), 1, "%s was pushed %d times" % (uid, len(delivered)))
        to_erin = recv.requests(path_e)
        self.assertLessEqual(len(to_erin), 2, to_erin)
        if len(to_erin) == 2:
            self.assertGreaterEqual(to_erin[1].t - to_erin[0].t, window_ms / 1000.0 - 0.3,
                                    "a push that may have arrived is not repeated within the coalescing window")
        self.wait_until(lambda: self.admin_push()["outbox"]["users"] == 0, "the outbox drains")


if __name__ == "__main__":
    unittest.main(verbosity=2)
