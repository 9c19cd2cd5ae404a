"""Group details, settings and membership periods against docs/PROTOCOL.md ("Roles",
"PATCH /v1/conversations/{id}", "History, membership periods and TTL"): an admin (not only
the owner) changes title, description, TTL and history visibility; a PATCH that changes
details and settings is two changes in one write; a member removed and added again sees
from the latest joining on, on the stream, in history and in the conversation list.

Written from the protocol document only. No sleeps: what must arrive is waited for; what
must not is checked behind a later event of the same stream.
"""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from test_groups import GroupCase, as_int, change_versions, changes, group_log  # noqa: E402
from wsclient import ev_message, num  # noqa: E402


class GroupSettingsTest(GroupCase):

    def test_an_admin_changes_details_and_settings(self):
        alice, bob, carol, dave = (self.person(n) for n in ("alice", "bob", "carol", "dave"))
        a, b, c, d = alice.login(), bob.login(), carol.login(), dave.login()
        A, B, C = self.ws(a), self.ws(b), self.ws(c)
        gid = self.group(a, [bob.id, carol.id], title="plans", description="first draft")        # v1
        self.assertStatus(self.set_role(a, gid, bob.id, "admin"), 200)                          # v2
        early = self.send_to(C, gid, "said before dave came")["message_id"]

        # The admin changes the description alone: the title stays.
        r = self.patch(b, gid, description="")                                                   # v3
        self.assertStatus(r, 200, "an admin clears the description")
        self.assertEqual((r.json.get("title"), r.json.get("description")), ("plans", ""), r.describe())
        # Title and settings in one PATCH: DETAILS_CHANGED and SETTINGS_CHANGED, two
        # versions, seen by everyone one after the other.
        r = self.patch(b, gid, title="final plans", ttl_s=3600, history_visible=True)           # v4, v5
        self.assertStatus(r, 200, "an admin changes title and settings at once")
        self.assertEqual((r.json.get("title"), r.json.get("ttl_s"), r.json.get("history_visible"),
                          as_int(r.json.get("version"))), ("final plans", 3600, True, 5), r.describe())
        for cl in (A, B, C):
            self.wait_change(cl, gid, 5)
        self.assertSameChanges(gid, (A, B, C), [1, 2, 3, 4, 5])
        cc = {num(x, "version"): x for x in changes(A, gid)}
        self.assertChange(cc[3], gid, 3, "DETAILS_CHANGED", bob.id)
        self.assertEqual((cc[3].get("title"), cc[3].get("description", "")), ("plans", ""), cc[3])
        self.assertChange(cc[4], gid, 4, "DETAILS_CHANGED", bob.id)
        self.assertEqual(cc[4].get("title"), "final plans", cc[4])
        self.assertChange(cc[5], gid, 5, "SETTINGS_CHANGED", bob.id)
        self.assertEqual((cc[5].get("ttl_s"), cc[5].get("history_visible")), (3600, True), cc[5])

        # A plain member may change none of it, and the refusals change nothing.
        for fields in ({"title": "mine"}, {"description": "mine"}, {"ttl_s": 5}, {"history_visible": False},
                       {"title": "final plans"}):  # the same value: refused all the same
            with self.subTest(member_patch=fields):
                self.assertError(self.patch(c, gid, **fields), 403, "forbidden_role")
        # The same values again: no change, no version.
        r = self.patch(b, gid, title="final plans", history_visible=True)
        self.assertStatus(r, 200)
        self.assertEqual(as_int(r.json.get("version")), 5, r.describe())

        # What the admin set holds: later messages live an hour, a member added later reads
        # what was said before.
        acc = self.send_to(C, gid, "lives an hour")
        m = A.wait_event(ev_message(acc["message_id"]))["message"]
        self.assertEqual(num(m, "expires_at_ms") - num(m, "sent_at_ms"), 3600 * 1000, m)
        self.assertStatus(self.add_members(b, gid, [dave.id]), 200)                             # v6
        self.assertEqual(self.history_ids(d, conversation_id=gid), [early, acc["message_id"]])
        det = self.details(d, gid)
        self.assertEqual((det.get("title"), det.get("description"), det.get("ttl_s"), det.get("history_visible")),
                         ("final plans", "", 3600, True), det)
        # Fence for "nothing more": carol's stream saw v6 after v5, and nothing else came.
        self.wait_change(C, gid, 6, "MEMBERS_ADDED")
        self.assertEqual(change_versions(C, gid), [(1, "CREATED"), (2, "ROLE_CHANGED"), (3, "DETAILS_CHANGED"),
                                                   (4, "DETAILS_CHANGED"), (5, "SETTINGS_CHANGED"),
                                                   (6, "MEMBERS_ADDED")])

    def test_member_added_again_sees_from_the_latest_joining(self):
        alice, bob, carol = self.person("alice"), self.person("bob"), self.person("carol")
        a, b, c = alice.login(), bob.login(), carol.login()
        A, B = self.ws(a), self.ws(b)
        gid = self.group(a, [bob.id, carol.id], title="comings and goings")                      # v1
        m1 = self.send_to(A, gid, "bob's first period")["message_id"]
        B.wait_event(ev_message(m1))
        self.assertStatus(self.remove_member(a, gid, bob.id), 204)                              # v2
        m2 = self.send_to(A, gid, "while bob is out")["message_id"]
        self.assertStatus(self.add_members(a, gid, [bob.id]), 200)                              # v3
        m3 = self.send_to(A, gid, "bob's second period")["message_id"]

        # The stream: the first period, its removal, the adding, then the second period.
        B.wait_event(ev_message(m3))
        self.assertEqual(group_log(B.events(), gid), [("change", 1, "CREATED"), ("message", m1),
                                                      ("change", 2, "MEMBER_REMOVED"),
                                                      ("change", 3, "MEMBERS_ADDED"), ("message", m3)])
        # History, single messages, the list: from the latest joining on only.
        self.assertEqual(self.history_ids(b, conversation_id=gid), [m3])
        self.assertError(self.get_message(b, m1), 404, "message_not_found")
        self.assertError(self.get_message(b, m2), 404, "message_not_found")
        self.assertStatus(self.get_message(b, m3), 200)
        s = self.summary(b, gid)
        self.assertIs(s.get("member"), True, s)
        self.assertEqual(((s.get("last_message") or {}).get("id"), s.get("unread_count")), (m3, 1), s)
        # Carol, a member throughout, sees everything.
        self.assertEqual(self.history_ids(c, conversation_id=gid), [m1, m2, m3])
        # Bob may send again, and everyone gets it.
        back = self.send_to(B, gid, "back again")["message_id"]
        A.wait_event(ev_message(back))
        self.assertEqual(self.history_ids(b, conversation_id=gid), [m3, back])


class DirectSettingsTest(GroupCase):
    """A direct conversation's ttl_s is either member's to change, and both are told:
    one member must not switch disappearing messages off, or lengthen them, unseen."""

    def test_both_members_are_told_of_a_direct_ttl_change(self):
        alice, bob = self.person("alice"), self.person("bob")
        a, b = alice.login(), bob.login()
        A, B = self.ws(a), self.ws(b)
        first = A.send_message(bob.id, "before the timer")
        B.wait_event(ev_message(first["message_id"]), 10)
        cid = first["conversation_id"]
        r = self.patch(b, cid, ttl_s=60)
        self.assertStatus(r, 200)
        for cl in (A, B):
            cc = cl.wait_event(lambda e: (e.get("conversation_change") or {}).get("conversation_id") == cid, 10,
                               what="SETTINGS_CHANGED of the direct conversation")["conversation_change"]
            self.assertEqual((cc.get("kind"), cc.get("by"), num(cc, "ttl_s")), ("SETTINGS_CHANGED", bob.id, 60), cc)
        # The same again changes nothing, and tells nobody.
        self.assertStatus(self.patch(b, cid, ttl_s=60), 200)
        fence = B.send_message(alice.id, "after the timer")
        A.wait_event(ev_message(fence["message_id"]), 10)
        self.assertEqual(len(changes(A, cid)), 1, changes(A, cid))


class RefusedLeaveTest(GroupCase):
    """An owner's leave the group refuses (no successor) is a write every send waits behind:
    it counts as a send, so it cannot be repeated at any rate."""

    NODE_CONFIG = {"messages": {"max_per_second": 2}}

    def test_refused_owner_leaves_are_rate_limited(self):
        alice, bob = self.person("alice"), self.person("bob")
        a = alice.login()
        gid = self.group(a, [bob.id], title="owned")
        answers = [self.remove_member(a, gid, alice.id) for _ in range(12)]
        self.assertEqual(answers[0].status, 409, answers[0].describe())
        self.assertIn(429, [r.status for r in answers], [r.status for r in answers])


if __name__ == "__main__":
    unittest.main(verbosity=2)
