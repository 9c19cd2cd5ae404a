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
        self.node = self.start_node(config={"messages": {"max_per_second": 5}})  # 10 at once
        mallory, victim = self.person("mallory"), self.person("victim")
        m = mallory.login()
        gid = self.group(m, [victim.id])  # the first change
        started = time.monotonic()
        answers = []
        # Renaming the group back and forth: every rename is an event in each member's
        # mailbox. However slow this machine, the 10 at once and what the time taken
        # refilled (5 a second) run out within 60 renames.
        for i in range(60):
            r = self.patch(m, gid, title="title %d" % (i % 2))
            answers.append(r)
            if r.status == 429:
                break
        refilled = int((time.monotonic() - started) * 5) + 1
        r = answers[-1]
        self.assertError(r, 429, "rate_limited")
        self.assertEqual(r.headers.get("Retry-After"), "1", r.describe())
        self.assertTrue(all(a.status == 200 for a in answers[:-1]), [a.describe() for a in answers if a.status != 200])
        self.assertLessEqual(len(answers) - 1, 9 + refilled, "%d renames let through" % (len(answers) - 1))
        # So are adds and removals by others; the victim's own leaving never is.
        self.assertError(self.add_members(m, gid, [self.person("other").id]), 429, "rate_limited")
        v = victim.login()
        self.assertStatus(self.remove_member(v, gid, victim.id), 204)

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
