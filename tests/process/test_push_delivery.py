"""Push notifications, what arrives and when (docs/PROTOCOL.md, "Push notifications"):
Web Push and UnifiedPush requests (RFC 8030 headers, RFC 8291 encryption, RFC 8292 VAPID),
the notification's facts and its content-free default, previews, coalescing and `count`,
devices that are connected (and acknowledge or not), own messages, muted conversations,
do-not-disturb, and the Matrix push gateway's JSON.

Written from the protocol document only; helpers in test_push.PushCase, the receiving end
in pushrecv.py. Nothing is timed except lower bounds ("not sooner than the coalescing
window", with slack); "no push" is watched for a few seconds after another push proved the
node has done its work.
"""

import datetime
import json
import os
import sys
import threading
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from pushrecv import Reply, Subscription, unb64url  # noqa: E402
from test_push import QUIET_S, WAIT_S, PushCase  # noqa: E402
from wsclient import WSTimeout, ev_message, num  # noqa: E402

SLACK_S = 0.3  # lower bounds on time are asserted with this much slack


def utf8_cut(text, limit):
    """The longest prefix of `text` of at most `limit` UTF-8 bytes that ends on a character."""
    out = ""
    for ch in text:
        if len((out + ch).encode("utf-8")) > limit:
            break
        out += ch
    return out


def hhmm(dt):
    return dt.strftime("%H:%M")


class AutoAcker:
    """Acknowledges every event a live stream receives, as soon as it arrives."""

    def __init__(self, client):
        self.client = client
        self.acked = 0
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True, name="autoacker")
        self._thread.start()

    def _run(self):
        while not self._stop and not self.client.closed:
            try:
                self.client.wait_until(lambda: self._stop or self.client.max_seq() > self.acked, 0.5)
            except WSTimeout:
                continue
            except Exception:
                return
            s = self.client.max_seq()
            if s > self.acked:
                try:
                    self.client.ack(s)
                except Exception:
                    return
                self.acked = s

    def stop(self):
        self._stop = True
        self._thread.join(2)


class DeliveryCase(PushCase):

    def mailbox(self, person, messages):
        """The user's mailbox as a new device of theirs receives it, once it holds
        `messages` messages: {seq: event}. Opens a live stream: call it once the pushes
        under test have arrived."""
        c = self.ws(person.login("reader"))
        c.wait_until(lambda: len([e for e in c.events() if "message" in e]) >= messages, WAIT_S,
                     what="%d messages in the mailbox" % messages)
        return {num(e, "seq"): e for e in c.events()}

    def assertCountChain(self, ns, mailbox, cap=100):
        """Each push counts the messages since the previous push (the device acknowledged
        nothing), at most `cap`, and names the newest of them (by its mailbox seq)."""
        prev = 0
        for n in ns:
            seq = int(n["seq"])
            self.assertGreater(seq, prev, "pushes go forward: %s" % ns)
            covered = [e for s, e in mailbox.items() if prev < s <= seq and "message" in e]
            self.assertEqual(n["count"], min(len(covered), cap), "count of %s (seqs %d..%d)" % (n, prev + 1, seq))
            self.assertIn("message", mailbox.get(seq, {}), "seq %d is a message: %s" % (seq, n))
            self.assertEqual(n["message_id"], mailbox[seq]["message"]["id"], n)
            prev = seq
        return prev

    def pushes(self, recv, path, sub, key):
        """[(request, notification)] of every push on `path` so far (each checked in full)."""
        return [(r, self.open_webpush(r, sub, key, recv)) for r in recv.requests(path)]

    def wait_push_naming(self, recv, path, sub, key, message_id, timeout=WAIT_S):
        """Waits for a push on `path` whose newest message is `message_id`; returns every
        push on `path` then, as pushes() does."""
        deadline = time.monotonic() + timeout
        opened = {}
        while True:
            for r in recv.requests(path):
                if id(r) not in opened:
                    opened[id(r)] = self.open_webpush(r, sub, key, recv)
                if opened[id(r)]["message_id"] == message_id:
                    return [(x, opened.get(id(x)) or self.open_webpush(x, sub, key, recv))
                            for x in recv.requests(path)]
            if time.monotonic() > deadline:
                self.fail("no push naming message %s on %s within %.0f s: %s"
                          % (message_id, path, timeout, list(opened.values())))
            time.sleep(0.2)


def newest(accepted):
    """The newest of some accepted messages: ids are in the order of the store's commits,
    compared by their decoded bytes (docs: "Order")."""
    return max(accepted, key=lambda a: unb64url(a["message_id"]))


class WebPushTest(DeliveryCase):

    def deliver(self, kind):
        self.start()
        recv = self.receiver()
        key = self.vapid_key()
        alice, bob = self.person("alice"), self.person("bob")
        s = bob.login("phone")
        _, sub, path = self.webpush(s, recv, kind=kind)
        text = "the secret plans %s" % uuid.uuid4().hex
        acc = self.ws(alice.login()).send_message(bob.id, text)
        [req] = recv.wait_requests(path, 1, WAIT_S)
        n = self.open_webpush(req, sub, key, recv, secrets=[text])
        self.assertNotification(n, bob.id, alice.id, acc, count=1)
        self.assertEqual(n["unread"], 1, n)
        self.assertNotIn("preview", n, "content-free by default")
        self.assertNotIn(text, json.dumps(n, ensure_ascii=False))
        self.assertNotIn(text[-32:], json.dumps(n, ensure_ascii=False))
        recv.assert_quiet(path, QUIET_S)
        self.assertEqual(recv.count(path), 1, "one message, one push")
        # seq is the message's mailbox seq: the device may resume after it.
        c = self.ws(s)
        ev = c.wait_event(ev_message(acc["message_id"]), WAIT_S)
        self.assertEqual(n["seq"], str(num(ev, "seq")), n)

    def test_webpush(self):
        self.deliver("webpush")

    def test_unifiedpush_takes_the_same_request(self):
        self.deliver("unifiedpush")

    def test_an_endpoint_registered_by_another_account_is_taken_from_the_first(self):
        """A phone that changed hands without a logout (or an app that registers the same
        endpoint under a new account): its endpoint pushes the newest account's messages only,
        never the previous owner's, whose target goes (its Matrix pushkey likewise)."""
        self.start()
        recv = self.receiver()
        key = self.vapid_key()
        alice, bob, carol = self.person("alice"), self.person("bob"), self.person("carol")
        old = alice.login("the phone, alice's")
        _, _, path = self.webpush(old, recv)
        _, pushkey, gateway = self.matrix(old, recv)
        self.assertEqual(len(self.targets(old)), 2)
        new = bob.login("the phone, bob's now")
        _, sub, _ = self.webpush(new, recv, path=path, sub=Subscription())
        self.matrix(new, recv, path=gateway, pushkey=pushkey)
        self.assertEqual(self.targets(old), [], "alice's session lives on, her targets went")
        self.assertEqual(len(self.targets(new)), 2)
        c = self.ws(carol.login())
        for_alice = c.send_message(alice.id, "for alice %s" % uuid.uuid4().hex)
        for_bob = c.send_message(bob.id, "for bob")
        self.wait_push_naming(recv, path, sub, key, for_bob["message_id"])
        recv.assert_quiet(path, QUIET_S)
        pushed = [n for _, n in self.pushes(recv, path, sub, key)]
        self.assertEqual({n["user_id"] for n in pushed}, {bob.id}, "nothing of alice's: %s" % pushed)
        self.assertNotIn(for_alice["message_id"], [n["message_id"] for n in pushed])
        # The same endpoint registered again by another device of bob's moves there too.
        laptop = bob.login("laptop")
        self.webpush(laptop, recv, path=path, sub=sub)
        self.assertEqual([t["kind"] for t in self.targets(new)], ["matrix"])

    def test_previews_when_the_device_opts_in(self):
        self.start(push={"preview_bytes": 10})
        recv = self.receiver()
        key = self.vapid_key()
        alice, bob = self.person("alice"), self.person("bob")
        phone, laptop = bob.login("phone"), bob.login("laptop")
        _, sub_p, path_p = self.webpush(phone, recv)
        _, sub_l, path_l = self.webpush(laptop, recv)
        r = self.put_settings(phone, previews=True)
        self.assertStatus(r, 200)
        self.assertEqual(r.json, {"previews": True, "dnd": None})
        a = self.ws(alice.login())
        text = "ab\u20ac\u20ac\u20ac\u20ac and a long tail"  # the 10th byte is inside the third euro sign
        want = utf8_cut(text, 10)
        self.assertEqual(want, "ab\u20ac\u20ac")
        acc = a.send_message(bob.id, text)
        n = self.open_webpush(recv.wait_requests(path_p, 1, WAIT_S)[0], sub_p, key, recv, secrets=[text, want])
        self.assertNotification(n, bob.id, alice.id, acc, count=1)
        self.assertEqual(n.get("preview"), want, "the text cut to push.preview_bytes at a character boundary")
        n = self.open_webpush(recv.wait_requests(path_l, 1, WAIT_S)[0], sub_l, key, recv, secrets=[text])
        self.assertNotIn("preview", n, "previews are the device's choice")
        acc = a.send_message(bob.id, "h\u00e9 h\u00e9")  # 7 bytes: whole
        reqs = recv.wait_requests(path_p, 2, WAIT_S)
        n = self.open_webpush(reqs[1], sub_p, key, recv)
        self.assertNotification(n, bob.id, alice.id, acc, count=1)
        self.assertEqual(n.get("preview"), "h\u00e9 h\u00e9")
        # Padded (RFC 8188) to 1 KiB: the push service cannot tell the previews' lengths
        # (or the senders' names') from the bodies'. 86 bytes of header, 16 of the tag.
        self.assertEqual([len(r.body) for r in reqs], [86 + 1024 + 16] * 2)

    def test_a_push_withdrawn_as_previews_are_turned_off_goes_again_at_once(self):
        # Previews turned off while the push (with its text) is being connected: it is
        # withdrawn before it goes out and made again without the text. Before, the attempt
        # written before connecting held the second one for a coalescing window (here a
        # minute, past the wait), as if the first could have arrived.
        self.start(push={"coalesce_ms": 60000})
        recv = self.receiver()
        key = self.vapid_key()
        alice, bob = self.person("alice"), self.person("bob")
        phone = bob.login("phone")
        _, sub, path = self.webpush(phone, recv)
        self.assertStatus(self.put_settings(phone, previews=True), 200)
        recv.hold_handshakes(1)
        text = "not for the lock screen"
        acc = self.ws(alice.login()).send_message(bob.id, text)
        recv.wait_held(1)
        self.assertStatus(self.put_settings(phone, previews=False), 200)
        recv.release()
        r = recv.wait_requests(path, 1, WAIT_S)[0]
        n = self.open_webpush(r, sub, key, recv, secrets=[text])
        self.assertNotification(n, bob.id, alice.id, acc, count=1)
        self.assertNotIn("preview", n, "made again without the text")
        recv.assert_quiet(path, QUIET_S, already=1)


class WhenTest(DeliveryCase):

    def test_bursts_are_coalesced_and_counted(self):
        window = 3.0
        self.start(push={"coalesce_ms": int(window * 1000)})
        recv = self.receiver()
        key = self.vapid_key()
        alice, bob = self.person("alice"), self.person("bob")
        _, sub, path = self.webpush(bob.login("phone"), recv)
        a = self.ws(alice.login())
        accs = [a.send_message(bob.id, "burst %d" % i) for i in range(5)]
        self.wait_push_naming(recv, path, sub, key, newest(accs)["message_id"])
        recv.assert_quiet(path, QUIET_S)
        pushes = self.pushes(recv, path, sub, key)
        ns = [n for _, n in pushes]
        for n in ns:
            self.assertEqual((n["user_id"], n["sender_id"], n["conversation_id"]),
                             (bob.id, alice.id, accs[0]["conversation_id"]), n)
        self.assertLess(len(ns), 5, "bursts are coalesced, never one push per message: %s" % ns)
        for (r0, _), (r1, _) in zip(pushes, pushes[1:]):
            self.assertGreaterEqual(r1.t - r0.t, window - SLACK_S, "at most one push per target per coalesce_ms")
        self.assertEqual(sum(n["count"] for n in ns), 5, ns)
        self.assertEqual(ns[-1]["message_id"], newest(accs)["message_id"])
        self.assertEqual(ns[-1]["unread"], 5, ns[-1])
        self.assertCountChain(ns, self.mailbox(bob, 5))

    def test_count_is_capped_at_100(self):
        window = 8.0  # the 130 sends below fit in it
        self.start(push={"coalesce_ms": int(window * 1000)})
        recv = self.receiver()
        key = self.vapid_key()
        alice, bob = self.person("alice"), self.person("bob")
        _, sub, path = self.webpush(bob.login("phone"), recv)
        a = self.ws(alice.login())
        first = a.send_message(bob.id, "first")
        n = self.open_webpush(recv.wait_requests(path, 1, WAIT_S)[0], sub, key, recv)
        self.assertEqual((n["message_id"], n["count"]), (first["message_id"], 1), n)
        refs = [a.send_async(bob.id, "many %d" % i) for i in range(130)]
        accs = []
        for ref in refs:
            f = a.wait_ref(ref, WAIT_S)
            self.assertIn("accepted", f, f)
            accs.append(f["accepted"])
        last = newest(accs + [first])
        ns = [n for _, n in self.wait_push_naming(recv, path, sub, key, last["message_id"], WAIT_S + window)]
        mb = self.mailbox(bob, 131)
        self.assertEqual(self.assertCountChain(ns, mb), max(s for s, e in mb.items() if "message" in e))
        self.assertIn(100, [n["count"] for n in ns], "more than 100 are counted as 100: %s" % [n["count"] for n in ns])
        self.assertEqual(ns[-1]["unread"], 131, ns[-1])

    def test_a_connected_device_that_acknowledges_is_not_pushed(self):
        self.start(push={"live_delay_ms": 2000})
        recv = self.receiver()
        key = self.vapid_key()
        alice, bob = self.person("alice"), self.person("bob")
        acking, silent, away = bob.login("acking"), bob.login("silent"), bob.login("away")
        _, _, path_a = self.webpush(acking, recv)
        _, sub_s, path_s = self.webpush(silent, recv)
        _, sub_w, path_w = self.webpush(away, recv)
        ca, cs = self.ws(acking), self.ws(silent)
        acker = AutoAcker(ca)
        self.addCleanup(acker.stop)
        acc = self.ws(alice.login()).send_message(bob.id, "are you there?")
        ev = ca.wait_event(ev_message(acc["message_id"]), WAIT_S)
        cs.wait_event(ev_message(acc["message_id"]), WAIT_S)
        # The device that received the event and did not acknowledge it is pushed once its
        # live_delay_ms is over; so is the device without a live stream.
        n = self.open_webpush(recv.wait_requests(path_s, 1, WAIT_S)[0], sub_s, key, recv)
        self.assertNotification(n, bob.id, alice.id, acc, count=1)
        n = self.open_webpush(recv.wait_requests(path_w, 1, WAIT_S)[0], sub_w, key, recv)
        self.assertNotification(n, bob.id, alice.id, acc, count=1)
        self.assertGreaterEqual(acker.acked, num(ev, "seq"), "the acking device acknowledged the message")
        recv.assert_quiet(path_a, QUIET_S, already=0)

    def test_own_messages_and_muted_conversations_do_not_push(self):
        self.start()
        recv = self.receiver()
        key = self.vapid_key()
        alice, bob, carol = self.person("alice"), self.person("bob"), self.person("carol")
        phone, desk = bob.login("phone"), bob.login("desk")
        _, sub, path = self.webpush(phone, recv)
        a, d, c = self.ws(alice.login()), self.ws(desk), self.ws(carol.login())
        own = d.send_message(alice.id, "from bob's desk")
        a.wait_event(ev_message(own["message_id"]), WAIT_S)
        reply = a.send_message(bob.id, "a reply")
        [req] = recv.wait_requests(path, 1, WAIT_S)
        n = self.open_webpush(req, sub, key, recv)
        self.assertNotification(n, bob.id, alice.id, reply, count=1)  # bob's own message is not counted
        recv.assert_quiet(path, QUIET_S)
        self.assertEqual(recv.count(path), 1, "no push for bob's own message")

        cid = reply["conversation_id"]
        r = self.call("PATCH", "/v1/conversations/" + cid, desk, {"muted": True})
        self.assertStatus(r, 200, "mute")
        self.assertIs(r.json.get("muted"), True, r.describe())
        a.send_message(bob.id, "in a muted conversation")
        recv.assert_quiet(path, 1.5 + QUIET_S)  # the coalescing window, then the usual watch
        self.assertEqual(recv.count(path), 1, "no push for a muted conversation")
        other = c.send_message(bob.id, "carol writes")
        reqs = recv.wait_requests(path, 2, WAIT_S)
        n = self.open_webpush(reqs[1], sub, key, recv)
        self.assertEqual((n["message_id"], n["sender_id"]), (other["message_id"], carol.id), n)

        r = self.call("PATCH", "/v1/conversations/" + cid, desk, {"muted": False})
        self.assertStatus(r, 200, "unmute")
        again = a.send_message(bob.id, "unmuted")
        reqs = recv.wait_requests(path, 3, WAIT_S)
        n = self.open_webpush(reqs[2], sub, key, recv)
        self.assertEqual((n["message_id"], n["conversation_id"]), (again["message_id"], cid), n)

    def test_do_not_disturb(self):
        self.start()
        recv = self.receiver()
        key = self.vapid_key()
        alice, bob = self.person("alice"), self.person("bob")
        now = datetime.datetime.now(datetime.timezone.utc)
        hour = datetime.timedelta(hours=1)
        local = now - 5 * hour  # utc_offset_min -300
        windows = {
            "quiet utc": ({"start": hhmm(now - hour), "end": hhmm(now + hour), "utc_offset_min": 0}, False),
            "quiet -5h": ({"start": hhmm(local - hour), "end": hhmm(local + hour), "utc_offset_min": -300}, False),
            "quiet all day": ({"start": hhmm(now + 3 * hour), "end": hhmm(now + 3 * hour), "utc_offset_min": 0}, False),
            "later": ({"start": hhmm(now + 2 * hour), "end": hhmm(now + 3 * hour), "utc_offset_min": 0}, True),
            "around midnight, not now": ({"start": hhmm(now + hour), "end": hhmm(now - hour), "utc_offset_min": 0}, True),
            "none": (None, True),
        }
        devices = {}
        for name, (dnd, pushed) in windows.items():
            s = bob.login(name)
            r = self.put_settings(s, dnd=dnd)
            self.assertStatus(r, 200, name)
            self.assertEqual(self.call("GET", "/v1/push/settings", s).json, {"previews": False, "dnd": dnd})
            _, sub, path = self.webpush(s, recv)
            devices[name] = (sub, path, pushed)
        acc = self.ws(alice.login()).send_message(bob.id, "at this hour?")
        for name, (sub, path, pushed) in devices.items():
            if pushed:
                n = self.open_webpush(recv.wait_requests(path, 1, WAIT_S)[0], sub, key, recv)
                self.assertNotification(n, bob.id, alice.id, acc, count=1)
        recv.assert_quiet(None, QUIET_S)
        for name, (sub, path, pushed) in devices.items():
            self.assertEqual(recv.count(path), 1 if pushed else 0, "device %r" % name)


class MatrixTest(DeliveryCase):

    def assertMatrix(self, req, acc, sender, app_id, pushkey, data, ts_range):
        """A Push Gateway API v1 notify request about `acc`; returns its notification."""
        self.assertEqual(req.method, "POST", req)
        self.assertEqual((req.header("content-type") or "").split(";")[0].strip(), "application/json", req.headers)
        body = req.json()
        n = body.get("notification")
        self.assertIsInstance(n, dict, body)
        self.assertEqual(n.get("event_id"), acc["message_id"], n)
        self.assertEqual(n.get("room_id"), acc["conversation_id"], n)
        ids_only = (data or {}).get("format") == "event_id_only"
        if ids_only:  # only event_id, room_id, prio, counts, devices
            for absent in ("type", "sender", "content"):
                self.assertNotIn(absent, n, "event_id_only sends no %s" % absent)
        else:
            self.assertEqual(n.get("type"), "m.room.message", n)
            self.assertEqual(n.get("sender"), sender, n)
        self.assertEqual(n.get("prio"), "high", n)
        self.assertIsInstance(n.get("counts"), dict, n)
        self.assertIsInstance(n["counts"].get("unread"), int, n)
        self.assertGreaterEqual(n["counts"]["unread"], 1, n)
        devices = n.get("devices")
        self.assertIsInstance(devices, list, n)
        self.assertEqual(len(devices), 1, n)
        d = devices[0]
        self.assertEqual((d.get("app_id"), d.get("pushkey")), (app_id, pushkey), d)
        self.assertIsInstance(d.get("pushkey_ts"), int, d)
        self.assertTrue(ts_range[0] - 1 <= d["pushkey_ts"] <= ts_range[1] + 1, "pushkey_ts is when it was registered")
        self.assertEqual(d.get("data"), data, "data is handed over as it is")
        return n

    def test_gateway_notification_field_by_field(self):
        self.start()
        recv = self.receiver()
        alice, bob = self.person("alice"), self.person("bob")
        phone, tablet = bob.login("phone"), bob.login("tablet")
        t0 = int(time.time())
        _, pk_short, path_short = self.matrix(phone, recv, data={"format": "event_id_only"})
        full_data = {"note": "kept as it is", "n": 1, "nested": {"list": [1, "two"]}}
        _, pk_full, path_full = self.matrix(tablet, recv, app_id="org.example.tablet", data=full_data)
        t1 = int(time.time())
        a = self.ws(alice.login())
        text = "matrix secret %s" % uuid.uuid4().hex
        acc = a.send_message(bob.id, text)

        req = recv.wait_requests(path_short, 1, WAIT_S)[0]
        n = self.assertMatrix(req, acc, alice.id, "org.example.app", pk_short, {"format": "event_id_only"}, (t0, t1))
        self.assertNotIn("content", n, "event_id_only leaves the content out")
        self.assertNotIn(text.encode(), req.body)

        req = recv.wait_requests(path_full, 1, WAIT_S)[0]
        n = self.assertMatrix(req, acc, alice.id, "org.example.tablet", pk_full, full_data, (t0, t1))
        self.assertEqual(n["counts"]["unread"], 1, n)
        p = (n.get("content") or {}).get("petchat")
        self.assertIsInstance(p, dict, "content.petchat is the notification: %s" % n)
        self.assertNotification(p, bob.id, alice.id, acc, count=1)
        self.assertNotIn("preview", p)
        self.assertNotIn(text.encode(), req.body, "no text in clear without previews")

        # Previews on for the tablet: in clear to its gateway; still nothing for event_id_only.
        self.assertStatus(self.put_settings(tablet, previews=True), 200)
        self.assertStatus(self.put_settings(phone, previews=True), 200)
        acc2 = a.send_message(bob.id, "short one")
        req = recv.wait_requests(path_full, 2, WAIT_S)[1]
        n = self.assertMatrix(req, acc2, alice.id, "org.example.tablet", pk_full, full_data, (t0, t1))
        self.assertEqual(n["content"]["petchat"].get("preview"), "short one", n)
        req = recv.wait_requests(path_short, 2, WAIT_S)[1]
        n = self.assertMatrix(req, acc2, alice.id, "org.example.app", pk_short, {"format": "event_id_only"}, (t0, t1))
        self.assertNotIn("content", n)
        self.assertNotIn(b"short one", req.body)

    def test_a_rejected_pushkey_removes_its_target_only(self):
        self.start()
        recv = self.receiver()
        alice, bob = self.person("alice"), self.person("bob")
        s = bob.login("phone")
        path = "/gw/shared/_matrix/push/v1/notify"
        bad, pk_bad, _ = self.matrix(s, recv, path=path, pushkey="pk-bad-" + uuid.uuid4().hex)
        good, pk_good, _ = self.matrix(s, recv, path=path, pushkey="pk-good-" + uuid.uuid4().hex)
        recv.script(path, then=Reply(200, json={"rejected": [pk_bad]}))
        gone0 = self.metric("petchat_push_targets_removed_total", reason="gone")
        sent0 = self.metric("petchat_push_sent_total", kind="matrix", result="gone")
        a = self.ws(alice.login())
        a.send_message(bob.id, "knock knock")
        recv.wait_requests(path, 2, WAIT_S)
        self.wait_target_gone(s, bad["id"])
        self.assertIn(good["id"], [t["id"] for t in self.targets(s)], "a pushkey not rejected keeps its target")
        self.wait_metric("petchat_push_targets_removed_total", gone0 + 1, reason="gone")
        self.wait_metric("petchat_push_sent_total", sent0 + 1, kind="matrix", result="gone")
        k = recv.count(path)
        acc = a.send_message(bob.id, "again")
        req = recv.wait_for(lambda r: r.path == path and r.json()["notification"]["event_id"] == acc["message_id"],
                            WAIT_S, "the push about the second message")
        self.assertEqual(req.json()["notification"]["devices"][0]["pushkey"], pk_good)
        recv.assert_quiet(path, QUIET_S, already=k + 1)


class NewestTest(DeliveryCase):
    """A push reports the newest message, whatever came before it in the mailbox."""

    def test_first_push_covers_only_what_follows_the_registration(self):
        self.start()
        recv = self.receiver()
        key = self.vapid_key()
        alice, bob = self.person("alice"), self.person("bob")
        a = self.ws(alice.login())
        for i in range(3):
            a.send_message(bob.id, "before %d" % i)
        s = bob.login("phone")
        _, sub, path = self.webpush(s, recv)
        acc = a.send_message(bob.id, "after")
        n = self.open_webpush(recv.wait_requests(path, 1, WAIT_S)[0], sub, key, recv)
        self.assertNotification(n, bob.id, alice.id, acc, count=1)

    def test_hundreds_of_own_messages_and_receipts_do_not_hide_the_new_one(self):
        self.start()
        recv = self.receiver()
        key = self.vapid_key()
        alice, bob, carol = self.person("alice"), self.person("bob"), self.person("carol")
        phone = bob.login("phone")
        _, sub, path = self.webpush(phone, recv)
        b = self.ws(bob.login("laptop"))
        c = self.ws(carol.login())
        for i in range(250):  # 250 own messages in bob's mailbox, and carol's receipts
            b.send_message(carol.id, "note %d" % i)
        recv.assert_quiet(path, QUIET_S)  # own messages push nothing
        acc = self.ws(alice.login()).send_message(bob.id, "the one that matters")
        n = self.open_webpush(recv.wait_requests(path, 1, WAIT_S)[0], sub, key, recv)
        self.assertNotification(n, bob.id, alice.id, acc, count=1)
        c.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
