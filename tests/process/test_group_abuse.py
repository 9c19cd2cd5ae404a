#!/usr/bin/env python3
"""What one user can make a group do to others: changes reach every member's mailbox as a
message does, so they are limited as sends are; a member who was removed sees the group as
it was when they left, not what the others chose since; a direct conversation with a user
whose account was deleted takes no more messages, however it is addressed."""
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from test_groups import GroupCase  # noqa: E402


class GroupAbuseTest(GroupCase):
    NODE_CONFIG = None  # each test starts its own node

    def test_group_changes_count_as_sends(self):
        self.node = self.start_node(config={"messages": {"max_per_second": 1}})  # 2 at once
        mallory, victim, other = self.person("mallory"), self.person("victim"), self.person("other")
        m, v = mallory.login(), victim.login()
        gid = self.group(m, [victim.id])  # the first change
        started = time.monotonic()
        answers = []
        # Renaming the group back and forth: every rename is an event in each member's
        # mailbox. However slow this machine, what is left of the 2 at once and what the
        # time taken refilled (1 a second) run out within 60 renames.
        for i in range(60):
            r = self.patch(m, gid, title="title %d" % (i % 2))
            answers.append(r)
            if r.status == 429:
                break
        refilled = int(time.monotonic() - started) + 1
        r = answers[-1]
        self.assertError(r, 429, "rate_limited")
        self.assertEqual(r.headers.get("Retry-After"), "1", r.describe())
        self.assertTrue(all(a.status == 200 for a in answers[:-1]), [a.describe() for a in answers if a.status != 200])
        self.assertLessEqual(len(answers) - 1, 1 + refilled, "%d renames let through" % (len(answers) - 1))
        # So are adds: within a few more tries (the bucket refills as they go), refused. (An
        # add of a member already there is charged as any other.)
        adds = []
        while len(adds) < 20 and (not adds or adds[-1].status == 200):
            adds.append(self.add_members(m, gid, [other.id]))
        self.assertError(adds[-1], 429, "rate_limited")
        # Leaving never is: the victim uses up their own sends, then leaves.
        mine = self.group(v, [], title="the victim's")
        for i in range(100):
            if self.patch(v, mine, title="x%d" % i).status != 200:
                break
        self.assertStatus(self.remove_member(v, gid, victim.id), 204)

    def test_leaving_groups_one_is_not_in_and_empty_patches_cost_the_writer_nothing_for_free(self):
        # A leave of any group id, or an empty patch, was a write every send waits behind,
        # uncharged: a loop of them flooded the writer. A leave of a group one is not in now
        # counts as a send; an empty patch writes nothing (and answers as a details request).
        self.node = self.start_node(config={"messages": {"max_per_second": 1}})  # 2 at once
        mallory = self.person("mallory")
        m = mallory.login()
        gid = self.group(m, [], title="mine")  # the first send
        answers = []
        for i in range(60):
            r = self.remove_member(m, "g" + "%026d" % i, mallory.id)
            answers.append(r)
            if r.status == 429:
                break
        self.assertError(answers[-1], 429, "rate_limited")
        for r in answers[:-1]:
            self.assertError(r, 404, "conversation_not_found")
        for i in range(20):  # nothing to change: no charge, no write, the group as it is
            r = self.patch(m, gid)
            self.assertStatus(r, 200, "empty patch #%d" % i)
            self.assertEqual(r.json.get("title"), "mine")
        self.assertError(self.patch(m, "g" + "0" * 26), 404, "conversation_not_found")

    def test_who_may_add_me(self):
        # group_adds "contacts": only people the user has written to directly may add them.
        self.node = self.start_node()
        mallory, victim, friend = self.person("mallory"), self.person("victim"), self.person("friend")
        m, v, f = mallory.login(), victim.login(), friend.login()
        me = self.call("GET", "/v1/me", v)
        self.assertEqual(me.json.get("group_adds"), "everyone", me.describe())
        self.assertError(self.call("PATCH", "/v1/me", v, {"group_adds": "friends"}), 400, "invalid_field")
        r = self.call("PATCH", "/v1/me", v, {"group_adds": "contacts"})
        self.assertStatus(r, 200)
        self.assertEqual(r.json.get("group_adds"), "contacts", r.describe())
        self.assertEqual(self.call("GET", "/v1/me", v).json.get("group_adds"), "contacts")
        # A stranger's creation and add leave the victim out, saying why; nothing reaches them.
        body = self.create(m, "spam", [victim.id, friend.id])
        self.assertEqual(self.failed_map(body).get(victim.id), "group_adds_restricted", body)
        gid = body["conversation"]["id"]
        r = self.add_members(m, gid, [victim.id])
        self.assertStatus(r, 200)
        self.assertEqual(self.failed_map(r.json).get(victim.id), "group_adds_restricted", r.describe())
        self.assertNotIn(gid, [c["id"] for c in self.all_conversations(v)])
        # Someone the victim wrote to may add them; the stranger's message to the victim does
        # not make the stranger one.
        V = self.ws(v)
        M = self.ws(m)
        M.send_message(victim.id, "hello, I am not your friend")
        self.assertFailed(self.failed_map(self.add_members(m, gid, [victim.id]).json), victim.id,
                          "group_adds_restricted")
        V.send_message(friend.id, "hi friend")
        added = self.create(f, "friends", [victim.id])
        self.assertEqual(added["failed"], [], added)
        self.assertIn(added["conversation"]["id"], [c["id"] for c in self.all_conversations(v)])
        # Back to everyone: the stranger may add them again.
        self.assertStatus(self.call("PATCH", "/v1/me", v, {"group_adds": "everyone"}), 200)
        r = self.add_members(m, gid, [victim.id])
        self.assertEqual(r.json.get("added"), [victim.id], r.describe())

    def test_a_stranger_cannot_add_someone_to_groups_without_bound(self):
        self.node = self.start_node(config={"messages": {"max_joins_per_hour": 3}})
        mallory, victim, other = self.person("mallory"), self.person("victim"), self.person("other")
        m = mallory.login()
        # Adds that are refused, or that leave the victim out, cost the victim nothing.
        alice = self.person("alice")
        a = alice.login()
        gid = self.group(a, [], title="alice's")
        for _ in range(5):
            self.assertError(self.add_members(m, gid, [victim.id]), 404, "conversation_not_found")
        for i in range(3):
            self.group(m, [victim.id], title="junk %d" % i)
        body = self.create(m, "junk 3", [victim.id, other.id])
        self.assertEqual([(f["user_id"], f["code"]) for f in body["failed"]], [(victim.id, "rate_limited")])
        self.assertEqual(body["conversation"]["member_count"], 2, "mallory and the other")
        # Per person added, whoever adds them; a group of their own costs them nothing.
        r = self.add_members(a, gid, [victim.id])
        self.assertStatus(r, 200)
        self.assertEqual([f["code"] for f in r.json["failed"]], ["rate_limited"])
        v = victim.login()
        self.group(v, [], title="the victim's own")
        self.assertEqual(len([c for c in self.all_conversations(v) if c["kind"] == "group"]), 4)

    def test_groups_made_and_left_at_once_are_capped_and_forgotten(self):
        """Creating a group and leaving it costs the creator nothing else, and each left
        group's record stays in their list: creations are capped a day, and a left group's
        record goes once the retention period has passed since they left (its messages gone)."""
        self.node = self.start_node(config={"messages": {"max_groups_created_per_day": 3, "retention_s": 3,
                                                         "expiry_sweep_interval_ms": 100}})
        mallory, other = self.person("mallory"), self.person("other")
        m, o = mallory.login(), other.login()
        made = [self.group(m, [other.id], title="junk %d" % i) for i in range(3)]
        self.assertError(self.create_request(m, "one too many", [other.id]), 429, "rate_limited")
        self.assertTrue(self.group(o, [], title="other's own"), "the cap is per creator")
        left = made[0]
        self.assertStatus(self.remove_member(m, left, mallory.id, successor=other.id), 204)
        ids = lambda session: sorted(c["id"] for c in self.all_conversations(session) if c["kind"] == "group")
        self.assertEqual(ids(m), sorted(made), "a group just left is still in the list")
        deadline = time.monotonic() + 30
        while left in ids(m):
            self.assertLess(time.monotonic(), deadline, "the left group's record did not go")
            time.sleep(0.2)
        self.assertEqual(ids(m), sorted(made[1:]), "the groups still joined stay")
        self.assertIn(left, ids(o), "the group goes on for its members")
        self.assertError(self.details_request(m, left), 404, "conversation_not_found")

    def test_ids_that_are_other_kinds_of_keys_name_no_conversation(self):
        self.node = self.start_node()
        mallory = self.person("mallory")
        m = mallory.login()
        gid = self.group(m, [], title="mine")
        for fake in ("p/%s\0%s" % (mallory.id, gid), "gc/" + mallory.id, "a/" + gid, gid + "\0x", "g", "d"):
            with self.subTest(id=fake):
                self.assertError(self.details_request(m, fake), 404, "conversation_not_found")
                self.assertError(self.patch(m, fake, muted=True), 404, "conversation_not_found")

    def test_a_former_member_sees_the_group_as_it_was(self):
        self.node = self.start_node()
        alice, bob, carol = self.person("alice"), self.person("bob"), self.person("carol")
        a, b = alice.login(), bob.login()
        gid = self.group(a, [bob.id, carol.id], title="plans")
        self.assertStatus(self.remove_member(a, gid, bob.id), 204)
        self.assertStatus(self.patch(a, gid, title="plans without bob", description="secret"), 200)
        self.assertStatus(self.add_members(a, gid, [self.person("dave").id]), 200)
        seen = self.summary(b, gid)
        self.assertFalse(seen["member"])
        self.assertEqual((seen["title"], seen["member_count"]), ("plans", 2), seen)
        self.assertNotIn("secret", str(seen))
        # Members see the group as it is.
        now = self.summary(a, gid)
        self.assertEqual((now["title"], now["member_count"]), ("plans without bob", 3))

    def test_a_deleted_peer_takes_nothing_by_conversation_id(self):
        self.node = self.start_node()
        alice, bob = self.person("alice"), self.person("bob")
        c = self.ws(alice.login())
        acc = c.send_message(bob.id, "hello")
        rc, out, err = self.node.ctl("users", "delete", bob.name)
        self.assertEqual(rc, 0, out + err)
        f = self.try_send_to(c, acc["conversation_id"], "are you there?")
        self.assertEqual(f.get("error", {}).get("code"), "user_not_found", f)
        self.assertEqual(c.try_send(bob.id, "and by name?").get("error", {}).get("code"), "user_not_found")


if __name__ == "__main__":
    unittest.main()
