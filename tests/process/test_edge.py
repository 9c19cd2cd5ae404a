#!/usr/bin/env python3
"""The node at the edge: behind a reverse proxy (gateway.trusted_proxies), whose
X-Forwarded-For / Forwarded headers name the client for rate limits and logs, and from
anyone else are ignored."""
import http.client
import os
import socket
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import NodeTestCase, _do_request  # noqa: E402

PW = "password123"
PROXY = "127.0.0.2"  # a second loopback address plays the reverse proxy
LIMITS = {"login_free_attempts": 1000, "login_free_attempts_per_address": 3, "login_backoff_initial_ms": 60000}


def login_from(node, source_ip, name, password, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=15, source_address=(source_ip, 0))
    body = {"name": name, "password": password, "device_name": "proxied"}
    return _do_request(conn, "POST", "/v1/sessions", body, None, headers)


class TrustedProxyTest(NodeTestCase):
    def test_one_attackers_failures_do_not_lock_out_others(self):
        node = self.start_node(config={"gateway": {"trusted_proxies": [PROXY]}, "users": LIMITS})
        node.new_user("alice")
        attacker = {"X-Forwarded-For": "198.51.100.66"}
        # Bogus names, as a password sprayer sends them; the proxy adds the attacker's
        # address, and whatever the attacker wrote to the left of it is not believed.
        for i in range(4):
            r = login_from(node, PROXY, "ghost%d" % i, "wrong", {"X-Forwarded-For": "10.9.9.%d, 198.51.100.66" % i})
            self.assertError(r, 401, "invalid_credentials", msg="failure %d" % i)
        self.assertError(login_from(node, PROXY, "ghost9", "wrong", attacker), 429, "rate_limited")
        # Alice, through the same proxy from her own address, logs in.
        r = login_from(node, PROXY, "alice", PW, {"X-Forwarded-For": "203.0.113.7"})
        self.assertStatus(r, 201, "alice behind the proxy while the attacker is locked out")
        # RFC 7239's header is understood too, and preferred.
        r = login_from(node, PROXY, "alice", PW, {"Forwarded": 'for="[2001:db8::7]:4711";proto=https',
                                                   "X-Forwarded-For": "198.51.100.66"})
        self.assertStatus(r, 201, "Forwarded names alice's address")
        # The attacker, locked by address, is still locked through the other header.
        r = login_from(node, PROXY, "alice", PW, {"Forwarded": "for=198.51.100.66"})
        self.assertError(r, 429, "rate_limited")

    def test_headers_from_anyone_else_are_ignored(self):
        # 127.0.0.1 is not a trusted proxy: its X-Forwarded-For is its own claim, and a new
        # address per attempt does not buy new attempts.
        node = self.start_node(config={"gateway": {"trusted_proxies": [PROXY]}, "users": LIMITS})
        node.new_user("bob")
        for i in range(4):
            r = login_from(node, "127.0.0.1", "ghost%d" % i, "wrong", {"X-Forwarded-For": "198.51.100.%d" % i})
            self.assertError(r, 401, "invalid_credentials", msg="failure %d" % i)
        r = login_from(node, "127.0.0.1", "bob", PW, {"X-Forwarded-For": "203.0.113.99"})
        self.assertError(r, 429, "rate_limited")
        # The proxy's clients are not affected by what 127.0.0.1 did.
        self.assertStatus(login_from(node, PROXY, "bob", PW, {"X-Forwarded-For": "203.0.113.8"}), 201)

    def test_without_trusted_proxies_the_peer_is_the_client(self):
        node = self.start_node(config={"users": LIMITS})
        node.new_user("carol")
        for i in range(4):
            r = login_from(node, PROXY, "ghost%d" % i, "wrong", {"X-Forwarded-For": "198.51.100.%d" % i})
            self.assertError(r, 401, "invalid_credentials", msg="failure %d" % i)
        r = login_from(node, PROXY, "carol", PW, {"X-Forwarded-For": "203.0.113.5"})
        self.assertError(r, 429, "rate_limited")

    def test_a_proxy_is_not_held_to_the_per_address_connection_cap(self):
        cap = 4
        node = self.start_node(config={"gateway": {"trusted_proxies": [PROXY], "max_connections_per_address": cap}})
        node.new_user("dave")
        held = []
        try:
            for _ in range(cap + 2):
                s = socket.create_connection(("127.0.0.1", node.port), timeout=10, source_address=(PROXY, 0))
                held.append(s)
            # Every held connection is served, as a proxy's pooled connections must be.
            for s in held:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: petchat\r\n\r\n")
                head = s.recv(64)
                self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
        finally:
            for s in held:
                s.close()


if __name__ == "__main__":
    unittest.main()
