"""Assets across regions (docs/FEDERATION.md, "Assets across regions"; docs/PROTOCOL.md,
"Assets: files, photos, voice notes"): real nats-server and real petchat-node regions,
spoken to as clients do.

A message's attachments travel by reference. The recipient's region fetches each one (and
its thumbnail) from the sender's region over NATS in signed pieces of at most 256 KiB,
checks the hash, stores it and serves it to its own members under the same access rules
as its own assets. Until it is here, a download by a user who may see it answers
`503 asset_pending` with `Retry-After`; anyone else gets `404 asset_not_found`, as for an
id that does not exist. A region serves an asset to another region only if a conversation
holding a message with it has members there.

Two regions ("europe" and "america") on one shared nats-server. Asset requests go over a
fresh raw socket each (test_assets.exchange), as in test_assets.py.

No sleeps as assertions: what the nodes do in the background (the fetcher runs every
second; a failed try is retried 1, 2, 4... up to 10 s later; a request to a region that
does not answer times out after 10 s) is polled for with generous deadlines, never timed.
A region is made unreachable by stopping its process (SIGSTOP): its connections stay open
and nothing it would answer is answered until SIGCONT.
"""

import base64
import json
import os
import signal
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fedharness  # noqa: E402
import harness  # noqa: E402
import test_assets  # noqa: E402  (raw-socket HTTP, test images, AssetCase's assertions)
import test_federation  # noqa: E402  (FederationCase: regions, users, streams)
import test_messaging  # noqa: E402  (assertWsError)
from test_assets import KIB, blake, blob, exchange, jpeg_size, make_png, q, random_id  # noqa: E402
from wsclient import ev_message  # noqa: E402

EUROPE, AMERICA, ASIA = "europe", "america", "asia"

CROSS_S = 30.0  # a message's or an asset's trip to the other region (normally about a second)
HEAL_S = 60.0  # after a region comes back: request timeouts (10 s) and backoff (up to 10 s)
POLL_S = 0.2  # the pause between two polls (never an assertion)
PIECE = 256 * KIB  # the largest piece of an asset request


def region_of(user_id):
    return user_id.split("@", 1)[1]


class AssetFederationCase(test_federation.FederationCase):
    """FederationCase with the asset API, spoken to each user's own region."""

    names = (EUROPE, AMERICA)

    # Helpers of other test cases that only need unittest's assertions.
    assertStatus = harness.NodeTestCase.assertStatus
    assertError = harness.NodeTestCase.assertError
    assertWsError = test_messaging.MessagingCase.assertWsError
    assertAttachment = test_assets.AssetCase.assertAttachment
    assertServedHeaders = test_assets.AssetCase.assertServedHeaders
    attach_send = staticmethod(test_assets.AssetCase.attach_send)

    def setUp(self):
        super().setUp()
        self._tokens = {}

    # -- processes -----------------------------------------------------------------------------

    def pause(self, region):
        """Stops `region`'s node process (SIGSTOP); resumed by resume() or at cleanup."""
        node = self.node(region)
        self.addCleanup(self.resume, region)
        os.kill(node.proc.pid, signal.SIGSTOP)

    def resume(self, region):
        node = self.node(region)
        if node.proc is not None and node.proc.poll() is None:
            os.kill(node.proc.pid, signal.SIGCONT)

    def federation_status(self, region):
        r = self.node(region).admin("GET", "/v1/admin/federation")
        self.assertStatus(r, 200, "GET /v1/admin/federation of %s" % region)
        return r.json

    def wait_federation(self, region, pred, what, timeout=CROSS_S):
        """Polls `region`'s /v1/admin/federation until pred(status) holds; returns it."""
        deadline = time.monotonic() + timeout
        while True:
            st = self.federation_status(region)
            if pred(st):
                return st
            if time.monotonic() > deadline:
                self.fail("%s: not within %.0f s; federation status of %s: %s" % (what, timeout, region, st))
            time.sleep(POLL_S)

    @staticmethod
    def outbox_to(status, region):
        return [r.get("outbox") for r in status.get("regions") or [] if r.get("region") == region]

    # -- REST, at the caller's own region ------------------------------------------------------

    def token(self, user_id):
        t = self._tokens.get(user_id)
        if t is None:
            t = self._tokens[user_id] = self.session(user_id, device="rest")["access_token"]
        return t

    def http(self, user_id, method, path, headers=(), body=None):
        return exchange(self.node(region_of(user_id)), method, path, self.token(user_id), headers, body)

    def upload(self, user_id, data, name):
        """Uploads in one request at the user's region; asserts 201 and the id; returns the asset."""
        r = self.http(user_id, "POST", "/v1/assets?name=" + q(name), body=data)
        self.assertStatus(r, 201, "upload of %d bytes by %s" % (len(data), user_id))
        self.assertIsInstance(r.json, dict, r.describe())
        self.assertEqual(r.json.get("id"), blake(data), r.describe())
        self.assertEqual(r.json.get("size"), len(data), r.describe())
        return r.json

    def download(self, user_id, asset_id, headers=(), method="GET"):
        return self.http(user_id, method, "/v1/assets/" + q(asset_id), headers)

    def assertPending(self, r, msg=None):
        """503 asset_pending with a Retry-After of whole seconds."""
        self.assertError(r, 503, "asset_pending", msg=msg)
        retry = r.headers.get("Retry-After")
        self.assertIsNotNone(retry, "asset_pending without Retry-After: %s" % r.describe())
        self.assertTrue(retry.strip().isdigit() and int(retry) > 0, "Retry-After: %r" % retry)

    def assertGone(self, user_id, asset_id, msg=None):
        self.assertError(self.download(user_id, asset_id), 404, "asset_not_found", msg=msg)

    def wait_download(self, user_id, asset_id, data=None, headers=(), timeout=CROSS_S):
        """Downloads at the user's region, polling while the answer is 503 asset_pending;
        asserts 200 (and the bytes, if `data` is given); returns the Response."""
        deadline = time.monotonic() + timeout
        while True:
            r = self.download(user_id, asset_id, headers)
            if r.status != 503:
                break
            self.assertPending(r, "%s downloading %s" % (user_id, asset_id))
            if time.monotonic() > deadline:
                self.fail("asset %s still pending for %s after %.0f s: %s\n%s\n%s"
                          % (asset_id, user_id, timeout, r.describe(), self.node(EUROPE).diagnostics(40),
                             self.node(AMERICA).diagnostics(40)))
            time.sleep(POLL_S)
        self.assertStatus(r, 200, "%s downloading %s" % (user_id, asset_id))
        if data is not None:
            self.assertEqual(len(r.raw), len(data), "downloaded size of %s" % asset_id)
            self.assertTrue(r.raw == data, "downloaded bytes of %s differ from the uploaded ones" % asset_id)
        return r

    # -- europe, played by the test ------------------------------------------------------------

    def impersonate_europe(self, bob, A, B):
        """Captures a genuine envelope of europe's lane to america (alice, on stream A, sends
        bob, on B, a message), then stops europe's node: from then on "europe" is whoever holds
        its key. Returns (pb, sign, send): `send(text, asset_id, name)` publishes on that lane,
        signed as europe, a message to bob with `asset_id` (hex) attached as `name`, and
        returns its id."""
        pb = test_federation.fed_pb2()
        port = self.servers[0].port
        spy = test_federation.RawNats(port)
        subject = "petchat.v1.fed.america.europe"
        spy.sub(subject)
        acc = A.send_message(bob, "genuine")
        B.wait_event(ev_message(acc["message_id"]), CROSS_S)
        genuine = None
        while genuine is None:  # the lane's envelopes since the spy subscribed, up to that message
            bundle = pb.bundle.FromString(pb.envelope.FromString(spy.next_msg()[1]).body)
            bodies = [pb.body.FromString(raw) for raw in bundle.bodies]
            genuine = next((bd for bd in bodies if bd.message.id == acc["message_id"]), None)
        spy.close()
        self.pause(EUROPE)
        sign = test_federation.region_signer(self.node(EUROPE))
        next_seq = max(bd.lane_seq for bd in bodies) + 1
        raw_id = base64.urlsafe_b64decode(genuine.message.id + "=" * (-len(genuine.message.id) % 4))

        def send(text, asset_id, name):
            nonlocal next_seq
            forged = pb.body()
            forged.CopyFrom(genuine)
            forged.lane_seq = next_seq
            next_seq += 1
            forged.created_at_ms = int(time.time() * 1000)
            forged.message.id = base64.urlsafe_b64encode(raw_id[:8] + os.urandom(8)).decode().rstrip("=")
            forged.message.client_id = "forged-" + random_id()[:8]
            forged.message.body.text = text
            att = forged.message.body.attachments.add()
            att.asset_id = asset_id
            att.name = name
            pub = test_federation.RawNats(port)
            pub.pub(subject, test_federation.envelope(pb, EUROPE, forged, sign=sign, lane_epoch=bundle.lane_epoch,
                                                      lane_base=bundle.lane_base))
            pub.close()
            return forged.message.id

        return pb, sign, send

    # -- live stream ---------------------------------------------------------------------------

    def send_attached(self, client, to, attachments, text=None, conversation_id=None):
        f = client.request({"send": self.attach_send(attachments, to=to, text=text, conversation_id=conversation_id)})
        self.assertIn("accepted", f, "send with attachments %s: %s" % (attachments, f))
        return f["accepted"]


# =========================================================================================


class AssetsAcrossRegions(AssetFederationCase):

    # 1 ---------------------------------------------------------------------------------------

    def test_attachment_is_fetched_and_served_in_the_recipients_region(self):
        alice, bob = self.user(EUROPE, "alice"), self.user(AMERICA, "bob")
        carol = self.user(AMERICA, "carol")  # bob's neighbour, not in the conversation
        A, B = self.connect(alice), self.connect(bob)

        png = make_png(300, 200, seed=41)
        photo = self.upload(alice, png, "photo.png")
        self.assertEqual(photo.get("content_type"), "image/png", photo)
        self.assertEqual((photo.get("width"), photo.get("height")), (300, 200), photo)
        self.assertTrue(photo.get("thumbnail_id"), "a 300x200 PNG gets a thumbnail: %s" % photo)
        data = blob(600 * KIB, "across the ocean")  # more than two pieces
        self.assertGreater(len(data), 2 * PIECE)
        doc = self.upload(alice, data, "report.bin")
        self.assertFalse(doc.get("thumbnail_id"), doc)

        acc = self.send_attached(A, bob, [{"asset_id": photo["id"], "name": "photo.png"},
                                          {"asset_id": doc["id"], "name": "report.bin"}], text="two files")
        ev = B.wait_event(ev_message(acc["message_id"]), CROSS_S, what="alice's message with attachments")
        msg = ev["message"]
        self.assertEqual((msg.get("from"), msg.get("to")), (alice, bob), msg)
        self.assertEqual((msg.get("body") or {}).get("text"), "two files", msg)
        atts = (msg.get("body") or {}).get("attachments") or []
        self.assertEqual(len(atts), 2, msg)
        # Filled in (at europe, from the asset) and carried to america as they are.
        self.assertAttachment(atts[0], photo, name="photo.png", every_field=True, what="the photo in bob's event")
        self.assertAttachment(atts[1], doc, name="report.bin", every_field=True, what="the file in bob's event")

        # Carol may not see any of it, whether america has fetched it yet or not: 404 as
        # for an id that does not exist.
        for aid in (photo["id"], photo["thumbnail_id"], doc["id"], random_id()):
            self.assertGone(carol, aid, msg="carol, before the fetch completed or after")

        # Bob gets the bytes from his own region once it fetched them: byte for byte, with
        # the same strong ETag as at europe.
        at_home = {aid: self.download(alice, aid) for aid in (photo["id"], photo["thumbnail_id"], doc["id"])}
        for aid, r in at_home.items():
            self.assertStatus(r, 200, "alice downloading %s at europe" % aid)
        r = self.wait_download(bob, doc["id"], data)
        self.assertServedHeaders(r, doc["id"], len(data))
        self.assertEqual(r.headers.get("ETag"), '"%s"' % doc["id"])
        self.assertEqual(r.headers.get("ETag"), at_home[doc["id"]].headers.get("ETag"))
        self.assertEqual(r.headers.get("Content-Type"), at_home[doc["id"]].headers.get("Content-Type"))

        r = self.wait_download(bob, photo["id"], png)
        self.assertServedHeaders(r, photo["id"], len(png))
        self.assertEqual(r.headers.get("ETag"), at_home[photo["id"]].headers.get("ETag"))
        self.assertEqual(r.headers.get("Content-Type"), "image/png")

        # The thumbnail travels too: a JPEG within the default thumbnail_px (320), its id
        # the hash of its bytes, the same bytes as at europe.
        tid = photo["thumbnail_id"]
        r = self.wait_download(bob, tid, at_home[tid].raw)
        self.assertEqual(r.raw[:2], b"\xff\xd8", "the thumbnail is a JPEG")
        self.assertEqual(r.headers.get("Content-Type"), "image/jpeg")
        self.assertEqual(blake(r.raw), tid)
        self.assertEqual(r.headers.get("ETag"), '"%s"' % tid)
        w, h = jpeg_size(r.raw)
        self.assertTrue(0 < max(w, h) <= 320, "thumbnail of %dx%d" % (w, h))

        # Ranges work on a fetched asset like on any other (this one spans two pieces).
        lo, hi = PIECE - 100, PIECE + 99
        r = self.download(bob, doc["id"], headers=[("Range", "bytes=%d-%d" % (lo, hi))])
        self.assertStatus(r, 206, "a range of a fetched asset")
        self.assertEqual(r.headers.get("Content-Range"), "bytes %d-%d/%d" % (lo, hi, len(data)))
        self.assertEqual(r.headers.get("ETag"), '"%s"' % doc["id"])
        self.assertTrue(r.raw == data[lo:hi + 1], "the bytes of the range")
        r = self.download(bob, doc["id"], headers=[("If-None-Match", '"%s"' % doc["id"])])
        self.assertStatus(r, 304)

        # Stored at america now, still not for carol.
        for aid in (photo["id"], tid, doc["id"], random_id()):
            self.assertGone(carol, aid, msg="carol, after bob downloaded it")
        self.assertError(self.download(carol, doc["id"], headers=[("Range", "bytes=0-9")]), 404, "asset_not_found")

        # Bob's history at america has the attachments, filled in the same way.
        h = self.node(AMERICA).request("GET", "/v1/conversations/%s/messages" % acc["conversation_id"],
                                       token=self.token(bob))
        self.assertStatus(h, 200)
        [stored] = [m for m in h.json["messages"] if m.get("id") == acc["message_id"]]
        atts = (stored.get("body") or {}).get("attachments") or []
        self.assertEqual(len(atts), 2, stored)
        self.assertAttachment(atts[0], photo, name="photo.png", every_field=True, what="the photo in bob's history")
        self.assertAttachment(atts[1], doc, name="report.bin", every_field=True, what="the file in bob's history")

    # 2 ---------------------------------------------------------------------------------------

    def test_attachment_is_pending_while_its_region_is_unreachable_and_fetched_when_it_returns(self):
        alice, bob = self.user(EUROPE, "alice"), self.user(AMERICA, "bob")
        A = self.connect(alice)
        bob_session = self.session(bob)
        self.token(alice), self.token(bob)  # sessions made while both regions run
        # Nothing of earlier tests is waiting to be resent to america: once alice's message
        # is stored for america, `published` has grown because of it.
        st = self.wait_federation(EUROPE, lambda st: self.outbox_to(st, AMERICA) == [0],
                                  "europe's outbox to america empty")
        published = st["published"]

        # America is stopped while alice uploads and sends: her message waits in
        # america's stream.
        self.pause(AMERICA)
        data = blob(300 * KIB, "while america sleeps")
        asset = self.upload(alice, data, "late.bin")
        acc = self.send_attached(A, bob, [{"asset_id": asset["id"], "name": "late.bin"}], text="for later")
        self.wait_federation(EUROPE, lambda st: st["published"] > published, "alice's message published")

        # Europe stops, america resumes: america gets the message, but not the bytes.
        self.pause(EUROPE)
        self.resume(AMERICA)
        B = self.connect(bob, bob_session)
        ev = B.wait_event(ev_message(acc["message_id"]), HEAL_S, what="alice's message, europe stopped")
        [att] = (ev["message"].get("body") or {}).get("attachments") or [None]
        self.assertAttachment(att, asset, name="late.bin", every_field=True)
        # While europe is stopped the asset cannot arrive: pending, every time bob asks.
        deadline = time.monotonic() + 2.0
        checks = 0
        while checks < 3 or time.monotonic() < deadline:
            self.assertPending(self.download(bob, asset["id"]), "bob, europe stopped (check %d)" % checks)
            checks += 1
            time.sleep(0.5)
        r = self.download(bob, asset["id"], method="HEAD")  # no body: the status and the header
        self.assertStatus(r, 503, "HEAD, europe stopped")
        self.assertTrue((r.headers.get("Retry-After") or "").strip().isdigit(), "HEAD: %s" % r.headers)

        # Europe comes back: america fetches it (after its timed-out requests and backoff).
        self.resume(EUROPE)
        r = self.wait_download(bob, asset["id"], data, timeout=HEAL_S)
        self.assertServedHeaders(r, asset["id"], len(data))
        # Both regions work as before.
        self.assertEqual(self.download(alice, asset["id"]).raw, data)
        again = self.send_attached(A, bob, [{"asset_id": asset["id"]}], text="once more")
        B.wait_event(ev_message(again["message_id"]), CROSS_S)
        self.wait_download(bob, asset["id"], data)

    def test_an_attachment_on_its_way_is_not_pending_for_one_who_may_not_see_its_message(self):
        """Pending tells that the asset is in a message the caller may see: deleted for them,
        it is 404 as for anything else, not "on its way from europe"."""
        alice, bob = self.user(EUROPE, "alice"), self.user(AMERICA, "bob")
        A = self.connect(alice)
        bob_session = self.session(bob)
        self.token(alice), self.token(bob)
        st = self.wait_federation(EUROPE, lambda st: self.outbox_to(st, AMERICA) == [0],
                                  "europe's outbox to america empty")
        published = st["published"]
        self.pause(AMERICA)
        data = blob(200 * KIB, "deleted while on its way")
        asset = self.upload(alice, data, "gone.bin")
        acc = self.send_attached(A, bob, [{"asset_id": asset["id"]}], text="soon deleted")
        self.wait_federation(EUROPE, lambda st: st["published"] > published, "alice's message published")
        self.pause(EUROPE)
        self.resume(AMERICA)
        B = self.connect(bob, bob_session)
        B.wait_event(ev_message(acc["message_id"]), HEAL_S, what="alice's message, europe stopped")
        self.assertPending(self.download(bob, asset["id"]), "bob sees the message")
        self.assertStatus(self.http(bob, "DELETE", "/v1/messages/%s?for=me" % acc["message_id"]), 204)
        self.assertGone(bob, asset["id"], "deleted for bob, europe stopped")
        self.resume(EUROPE)

    def test_an_attachment_on_its_way_is_pending_however_many_messages_elsewhere_name_it(self):
        """Waiting references in other conversations (a file forwarded to many, or a region
        naming one hash again and again) do not turn a recipient's "on its way" into 404."""
        alice, bob = self.user(EUROPE, "alice"), self.user(AMERICA, "bob")
        carol = self.user(AMERICA, "carol")
        A = self.connect(alice)
        bob_session = self.session(bob)
        self.token(alice), self.token(bob), self.token(carol)
        st = self.wait_federation(EUROPE, lambda st: self.outbox_to(st, AMERICA) == [0],
                                  "europe's outbox to america empty")
        published = st["published"]
        self.pause(AMERICA)
        asset = self.upload(alice, blob(100 * KIB, "forwarded to many"), "many.bin")
        for i in range(70):  # before bob's: older ids (the first 64 were all the old code read)
            self.send_attached(A, carol, [{"asset_id": asset["id"]}], text="to carol %d" % i)
        acc = self.send_attached(A, bob, [{"asset_id": asset["id"]}], text="and to bob")
        self.wait_federation(EUROPE, lambda st: st["published"] >= published + 71, "alice's messages published")
        self.pause(EUROPE)
        self.resume(AMERICA)
        B = self.connect(bob, bob_session)
        B.wait_event(ev_message(acc["message_id"]), HEAL_S, what="alice's message to bob, europe stopped")
        self.assertPending(self.download(bob, asset["id"]), "bob sees the message, 70 older ones elsewhere")
        self.resume(EUROPE)

    # 3 ---------------------------------------------------------------------------------------

    def test_a_region_does_not_serve_assets_to_regions_that_may_not_see_them(self):
        alice, dave = self.user(EUROPE, "alice"), self.user(EUROPE, "dave")
        bob = self.user(AMERICA, "bob")
        A, D, B = self.connect(alice), self.connect(dave), self.connect(bob)
        data = blob(5000, "europe only")
        asset = self.upload(alice, data, "private.bin")
        acc = self.send_attached(A, dave, [{"asset_id": asset["id"]}], text="just for you")
        D.wait_event(ev_message(acc["message_id"]), CROSS_S)
        self.assertTrue(self.download(dave, asset["id"]).raw == data, "dave downloads it at europe")

        # Bob cannot attach what he may not download, nor download it at america.
        f = B.request({"send": self.attach_send([{"asset_id": asset["id"]}], to=alice, text="mine now?")})
        self.assertWsError(f, "asset_not_found")
        self.assertGone(bob, asset["id"], msg="bob at america")
        self.assertGone(bob, random_id(), msg="bob at america, an id that does not exist")
        # His refused send reached nobody: alice's stream gets bob's next message only.
        fence = B.send_message(alice, "hello")
        A.wait_event(ev_message(fence["message_id"]), CROSS_S)
        self.assertEqual([e["message"].get("body", {}).get("text") for e in A.events() if "message" in e
                          and e["message"].get("from") == bob], ["hello"])


class SameBytesInBothRegions(AssetFederationCase):
    """An asset stored at america already (carol uploaded it) that a message from europe
    names: america serves it to that message's recipient only once europe has shown it
    holds the bytes, by sending them all (docs/FEDERATION.md, "Assets across regions")."""

    def test_attachment_stored_here_already_is_served_once_its_region_has_shown_it(self):
        alice, bob = self.user(EUROPE, "alice"), self.user(AMERICA, "bob")
        carol = self.user(AMERICA, "carol")
        A, B = self.connect(alice), self.connect(bob)
        data = blob(300 * KIB, "uploaded on both sides")
        png = make_png(400, 300, seed=77)  # with a thumbnail, made the same on both sides
        mine = [self.upload(carol, data, "carols.bin"), self.upload(carol, png, "carols.png")]
        theirs = [self.upload(alice, data, "alices.bin"), self.upload(alice, png, "alices.png")]
        self.assertEqual([x["id"] for x in mine], [x["id"] for x in theirs])
        self.assertTrue(theirs[1].get("thumbnail_id"))
        self.assertEqual(mine[1].get("thumbnail_id"), theirs[1]["thumbnail_id"])
        acc = self.send_attached(A, bob, [{"asset_id": x["id"]} for x in theirs], text="the same bytes")
        B.wait_event(ev_message(acc["message_id"]), CROSS_S, what="alice's message")
        self.wait_download(bob, theirs[0]["id"], data)
        self.wait_download(bob, theirs[1]["id"], png)
        thumb = self.wait_download(bob, theirs[1]["thumbnail_id"])
        self.assertEqual(blake(thumb.raw), theirs[1]["thumbnail_id"])
        # The proof counted for alice's message only: carol's neighbour still sees nothing.
        dave = self.user(AMERICA, "dave")
        for aid in (theirs[0]["id"], theirs[1]["id"], theirs[1]["thumbnail_id"]):
            self.assertGone(dave, aid)
        self.assertStatus(self.download(carol, mine[0]["id"]), 200)


class FetchedThumbnailsGo(AssetFederationCase):
    """A fetched original and its thumbnail both go once no message holds them, whichever
    of the two was fetched first (fetches go in hash order)."""

    node_config = {"messages": {"max_per_second": 5000}, "assets": {"grace_s": 2, "collect_interval_s": 1}}

    def test_a_fetched_thumbnail_goes_with_its_original_even_when_fetched_first(self):
        alice, bob = self.user(EUROPE, "alice"), self.user(AMERICA, "bob")
        A, B = self.connect(alice), self.connect(bob)
        # An image whose thumbnail's hash sorts before its own: america fetches it first.
        for seed in range(200):
            png = make_png(300, 200, seed=5000 + seed)
            photo = self.upload(alice, png, "first.png")
            if photo.get("thumbnail_id") and photo["thumbnail_id"] < photo["id"]:
                break
        else:
            self.fail("no image with a thumbnail hashed before it in 200 tries")
        acc = self.send_attached(A, bob, [{"asset_id": photo["id"], "name": "first.png"}], text="soon gone")
        B.wait_event(ev_message(acc["message_id"]), CROSS_S, what="alice's message")
        self.wait_download(bob, photo["id"], png)
        self.wait_download(bob, photo["thumbnail_id"])
        blobs = os.path.join(self.node(AMERICA).data_dir, "assets", "blobs")
        paths = [os.path.join(blobs, aid[:2], aid) for aid in (photo["id"], photo["thumbnail_id"])]
        self.assertTrue(all(os.path.exists(p) for p in paths), paths)
        r = self.http(alice, "DELETE", "/v1/messages/%s?for=everyone" % q(acc["message_id"]))
        self.assertStatus(r, 204, "alice deletes her message for everyone")
        deadline = time.monotonic() + CROSS_S
        while any(os.path.exists(p) for p in paths) and time.monotonic() < deadline:
            time.sleep(POLL_S)
        self.assertEqual([os.path.basename(p) for p in paths if os.path.exists(p)], [],
                         "blobs still stored at america after the message went")


class FetchBudgetPerRegion(AssetFederationCase):
    """What one region has this one store of its attachments is held to
    assets.max_fetched_bytes_per_region: beyond it they wait, pending, until space comes
    back (a hostile region cannot fill the disk with attachments charged to no one)."""

    node_config = {"messages": {"max_per_second": 5000},
                   "assets": {"max_fetched_bytes_per_region": 150 * KIB, "grace_s": 2, "collect_interval_s": 1}}

    def test_a_regions_attachments_wait_beyond_its_budget(self):
        alice, bob = self.user(EUROPE, "alice"), self.user(AMERICA, "bob")
        A, B = self.connect(alice), self.connect(bob)
        first = blob(100 * KIB, "within the budget")
        x = self.upload(alice, first, "first.bin")
        acc = self.send_attached(A, bob, [{"asset_id": x["id"]}], text="first")
        B.wait_event(ev_message(acc["message_id"]), CROSS_S, what="the first message")
        self.wait_download(bob, x["id"], first)
        second = blob(100 * KIB, "beyond the budget")
        y = self.upload(alice, second, "second.bin")
        acc2 = self.send_attached(A, bob, [{"asset_id": y["id"]}], text="second")
        B.wait_event(ev_message(acc2["message_id"]), CROSS_S, what="the second message")
        # 200 KiB of europe's would be stored, against a budget of 150: the second waits.
        until = time.monotonic() + 3
        while time.monotonic() < until:
            self.assertPending(self.download(bob, y["id"]), "beyond europe's budget at america")
            time.sleep(POLL_S)
        # The first message goes (deleted for everyone): its attachment is collected at
        # america, europe's budget has room again, and the second is fetched.
        r = self.http(alice, "DELETE", "/v1/messages/%s?for=everyone" % q(acc["message_id"]))
        self.assertStatus(r, 204, "alice deletes her first message for everyone")
        self.wait_download(bob, y["id"], second, timeout=90)


class DamagedCopyAtItsRegion(AssetFederationCase):
    """The asset's bytes at europe were damaged on disk (its length kept): america fetches
    them, finds they do not match their hash, and gives up after a few tries instead of
    fetching the whole asset again every few seconds for as long as the message exists."""

    def test_bytes_that_never_match_their_hash_are_given_up(self):
        alice, bob = self.user(EUROPE, "alice"), self.user(AMERICA, "bob")
        A, B = self.connect(alice), self.connect(bob)
        data = blob(300 * KIB, "damaged at home")
        asset = self.upload(alice, data, "damaged.bin")
        path = os.path.join(self.node(EUROPE).data_dir, "assets", "blobs", asset["id"][:2], asset["id"])
        os.chmod(path, 0o600)
        with open(path, "r+b") as f:  # bit rot: one byte in the middle, the length kept
            f.seek(len(data) // 2)
            f.write(bytes([data[len(data) // 2] ^ 0xFF]))
        acc = self.send_attached(A, bob, [{"asset_id": asset["id"]}], text="a damaged copy")
        B.wait_event(ev_message(acc["message_id"]), CROSS_S, what="the message, delivered all the same")
        deadline = time.monotonic() + HEAL_S
        while True:
            r = self.download(bob, asset["id"])
            if r.status != 503:
                break
            self.assertLess(time.monotonic(), deadline, "still pending after %.0f s" % HEAL_S)
            time.sleep(POLL_S)
        self.assertError(r, 404, "asset_not_found", msg="given up, as a fetch the holder cannot answer")


class HostileRegionNamesAHash(AssetFederationCase):
    """Europe, hostile (its real signing key, its node stopped), sends america a message
    naming the hash of an asset a user of america uploaded and never sent anywhere. Neither
    the message's recipient at america nor europe itself gets those bytes: the reference
    waits for europe to show it holds them, which it cannot."""

    def test_a_hash_named_in_a_message_from_another_region_opens_nothing(self):
        alice, bob = self.user(EUROPE, "alice"), self.user(AMERICA, "bob")
        carol = self.user(AMERICA, "carol")
        B, A = self.connect(bob), self.connect(alice)
        secret = blob(4000, "carol's own")
        asset = self.upload(carol, secret, "private.bin")

        pb, sign, send = self.impersonate_europe(bob, A, B)
        port = self.servers[0].port
        forged_id = send("look what I have", asset["id"], "yours.bin")
        ev = B.wait_event(ev_message(forged_id), CROSS_S, what="the forged message")
        self.assertEqual([a.get("asset_id") for a in ev["message"]["body"]["attachments"]], [asset["id"]])

        # Bob: waiting for europe to show it holds the bytes (it is asked, and stopped).
        self.assertPending(self.download(bob, asset["id"]), "bob, recipient of the forged message")
        # Europe, asking america for the bytes with its own key: nothing.
        req = pb.body()
        req.origin, req.destination = EUROPE, AMERICA
        req.created_at_ms = int(time.time() * 1000)
        req.asset_request.hash = bytes.fromhex(asset["id"])
        req.asset_request.offset, req.asset_request.length = 0, 4096
        asker = test_federation.RawNats(port)
        asker.sub("_INBOX.europe.hostile", sid=7)  # where europe's own requests wait
        payload = test_federation.envelope(pb, EUROPE, req, sign=sign, lane_epoch=0)
        asker.sock.sendall(b"PUB petchat.v1.asset.america.europe _INBOX.europe.hostile %d\r\n" % len(payload)
                           + payload + b"\r\n")
        answer = pb.envelope.FromString(asker.next_msg(timeout=CROSS_S)[1])
        asker.close()
        [piece] = [pb.body.FromString(raw).asset_piece for raw in pb.bundle.FromString(answer.body).bodies]
        self.assertFalse(piece.found, "america answered europe with carol's bytes")
        self.assertEqual(piece.data, b"")
        # Carol still has her asset; her neighbour sees nothing.
        self.assertStatus(self.download(carol, asset["id"]), 200)
        self.assertGone(self.user(AMERICA, "dave"), asset["id"])



JSON = [("Content-Type", "application/json")]


class HiddenHistoryAcrossRegions(AssetFederationCase):
    """A group homed at america hides its history from those who join. A file sent there
    before alice of europe joined stays america's: europe, asking with its own key by the
    file's hash, gets nothing (before, any member of europe in the group opened every file
    the group ever held), while a file sent after she joined is fetched and hers."""

    def ask_for(self, asset_id):
        """Europe's signed request for the first piece of `asset_id`; america's answer."""
        pb = test_federation.fed_pb2()
        sign = test_federation.region_signer(self.node(EUROPE))
        req = pb.body()
        req.origin, req.destination = EUROPE, AMERICA
        req.created_at_ms = int(time.time() * 1000)
        req.asset_request.hash = bytes.fromhex(asset_id)
        req.asset_request.offset, req.asset_request.length = 0, 4096
        asker = test_federation.RawNats(self.servers[0].port)
        try:
            asker.sub("_INBOX.europe.asker", sid=7)
            payload = test_federation.envelope(pb, EUROPE, req, sign=sign, lane_epoch=0)
            asker.sock.sendall(b"PUB petchat.v1.asset.america.europe _INBOX.europe.asker %d\r\n" % len(payload)
                               + payload + b"\r\n")
            answer = pb.envelope.FromString(asker.next_msg(timeout=CROSS_S)[1])
        finally:
            asker.close()
        [piece] = [pb.body.FromString(raw).asset_piece for raw in pb.bundle.FromString(answer.body).bodies]
        return piece

    def test_a_file_sent_before_a_member_of_another_region_joined_stays_hidden_from_it(self):
        carol, dave = self.user(AMERICA, "carol"), self.user(AMERICA, "dave")
        alice = self.user(EUROPE, "alice")
        C, A = self.connect(carol), self.connect(alice)
        r = self.http(carol, "POST", "/v1/conversations", JSON, body=json.dumps(
            {"title": "before you came", "members": [dave], "history_visible": False}).encode())
        self.assertStatus(r, 201, "create the group")
        gid = r.json["conversation"]["id"]
        before = blob(3000, "sent before alice came")
        old = self.upload(carol, before, "old.bin")
        self.send_attached(C, None, [{"asset_id": old["id"]}], text="old news", conversation_id=gid)
        r = self.http(carol, "POST", "/v1/conversations/%s/members" % q(gid), JSON,
                      body=json.dumps({"members": [alice]}).encode())
        self.assertStatus(r, 200, "add alice of europe")
        after = blob(3000, "sent once alice is in")
        new = self.upload(carol, after, "new.bin")
        acc = self.send_attached(C, None, [{"asset_id": new["id"]}], text="welcome", conversation_id=gid)
        A.wait_event(ev_message(acc["message_id"]), CROSS_S)
        self.wait_download(alice, new["id"], after)  # fetched by europe: she may see it
        piece = self.ask_for(old["id"])
        self.assertFalse(piece.found, "america gave europe a file sent before its member joined")
        self.assertEqual(piece.data, b"")
        self.assertTrue(self.ask_for(new["id"]).found, "and the file she may see is given")
        self.assertGone(alice, old["id"], msg="alice at europe")


class SlowRegionHoldsOnlyItsOwnFetches(AssetFederationCase):
    """Europe, hostile (its real signing key, its node stopped), sends bob at america a
    message naming an asset of 100 MiB, and answers america's requests for it just fast
    enough: a piece of 256 KiB every 2 s, above the 64 KiB/s a fetch must keep up, so the
    fetch would go on for 13 minutes. Meanwhile chen at asia sends bob a file: america
    fetches it from asia at once, not after europe's. And bob uploads the very bytes europe's
    message named: the fetch of them going on holds his upload up for no time."""

    names = (EUROPE, AMERICA, ASIA)

    def test_a_region_trickling_its_asset_does_not_hold_up_another_regions(self):
        alice, bob, chen = self.user(EUROPE, "alice"), self.user(AMERICA, "bob"), self.user(ASIA, "chen")
        B, A = self.connect(bob), self.connect(alice)
        pb, sign, send = self.impersonate_europe(bob, A, B)
        port = self.servers[0].port
        holder = test_federation.RawNats(port)  # europe's asset service, played by the test
        self.addCleanup(holder.close)
        holder.sub("petchat.v1.asset.europe.america", sid=9)
        same = blob(5000, "bytes europe names and bob has")
        big = bytes.fromhex(blake(same))
        forged_id = send("a big file, slowly", big.hex(), "big.bin")
        pub = test_federation.RawNats(port)  # europe's answers
        self.addCleanup(pub.close)
        B.wait_event(ev_message(forged_id), CROSS_S, what="the message naming the big asset")

        stop = threading.Event()
        answered, failures = [], []

        def answer(reply, request):
            req = pb.body.FromString(pb.bundle.FromString(pb.envelope.FromString(request).body).bodies[0])
            piece = pb.body()
            piece.origin, piece.destination = EUROPE, AMERICA
            piece.created_at_ms = int(time.time() * 1000)
            piece.asset_piece.hash = big
            piece.asset_piece.found = True
            piece.asset_piece.offset = req.asset_request.offset
            piece.asset_piece.size = 100 << 20
            piece.asset_piece.data = b"\0" * min(PIECE, req.asset_request.length or PIECE)
            pub.pub(reply, test_federation.envelope(pb, EUROPE, piece, sign=sign, lane_epoch=0))
            answered.append(req.asset_request.offset)

        # America's fetcher is inside europe's fetch once its first request is here.
        _, reply, request = holder.next_request(timeout=CROSS_S)
        self.assertIsNotNone(reply)

        def trickle(reply, request):
            try:
                while not stop.wait(2.0):
                    answer(reply, request)
                    _, reply, request = holder.next_request(timeout=15)
            except Exception as e:  # noqa: BLE001 (told to the test below, unless it is over)
                if not stop.is_set():
                    failures.append(e)

        worker = threading.Thread(target=trickle, args=(reply, request), daemon=True)
        worker.start()
        self.addCleanup(worker.join, 20)
        self.addCleanup(stop.set)

        C = self.connect(chen)
        data = blob(3000, "chen's file")
        asset = self.upload(chen, data, "chen.bin")
        sent = self.send_attached(C, bob, [{"asset_id": asset["id"], "name": "chen.bin"}])
        B.wait_event(ev_message(sent["message_id"]), CROSS_S)
        self.wait_download(bob, asset["id"], data)  # not 13 minutes from now
        mine = self.upload(bob, same, "mine.bin")  # not once europe's fetch is over
        self.assertEqual(mine["id"], big.hex())
        self.assertEqual(failures, [], "the fake europe's answers")
        # Europe's fetch was going on all along: piece after piece was asked for and answered.
        deadline = time.monotonic() + CROSS_S
        while len(answered) < 3 and time.monotonic() < deadline:
            time.sleep(POLL_S)
        self.assertGreaterEqual(len(answered), 3, "pieces of europe's asset answered")
        self.assertEqual(answered[:3], [0, PIECE, 2 * PIECE], "one fetch, going on from piece to piece")


if __name__ == "__main__":
    try:
        unittest.main(verbosity=2)
    finally:
        fedharness.close_all_servers()
