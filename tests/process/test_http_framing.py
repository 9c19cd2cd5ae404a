#!/usr/bin/env python3
"""Request framing at the HTTP edge: chunked bodies are read within bounds (a chunk line that
never ends is refused, not buffered until the deadline), trailer fields never stand in for
headers, and a Transfer-Encoding whose body length is unknown is refused rather than read
as the next request. A new connection must ask within the request timeout."""
import http.client
import json
import os
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import NodeTestCase, read_to_end  # noqa: E402

PROXY = "127.0.0.2"  # a second loopback address plays the reverse proxy


def read_answer(sock, timeout=5):
    sock.settimeout(timeout)
    resp = http.client.HTTPResponse(sock, method="POST")
    resp.begin()
    body = resp.read()
    return resp.status, (json.loads(body) if body else None)


def login_head(extra=""):
    return ("POST /v1/sessions HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n" + extra + "\r\n").encode()


def chunked(body, trailer=""):
    return b"%x\r\n%s\r\n0\r\n%s\r\n" % (len(body), body, trailer.encode())


class ChunkedBodiesTest(NodeTestCase):
    def test_a_chunk_line_that_never_ends_is_refused_early(self):
        # A long deadline: before the fix only the deadline ended such a request, and the
        # node held everything sent until then.
        node = self.start_node(config={"gateway": {"request_timeout_ms": 60000}})
        s = node.raw_socket()
        # 256 KiB of one line: well past the read buffer's cap (the header's 8 KiB and 64 KiB),
        # and within what the node reads and drops after it answers (so no reset loses the
        # answer). Before the fix the node kept it all and waited for more.
        s.sendall(login_head() + b"1;" + b"a" * (256 << 10))
        status, body = read_answer(s)
        self.assertEqual(status, 400)
        self.assertEqual(body["error"]["code"], "bad_request")
        self.assertIn("too long", body["error"]["message"])
        s.close()
        # The node serves on.
        self.assertStatus(node.request("GET", "/healthz"), 200)

    def test_chunked_bodies_are_read_and_trailers_refused(self):
        node = self.start_node(config={"gateway": {"trusted_proxies": [PROXY]}})
        node.new_user("carol")
        body = json.dumps({"name": "carol", "password": "password123", "device_name": "chunked"}).encode()
        # A chunked body is a body like any other.
        s = socket.create_connection(("127.0.0.1", node.port), timeout=10, source_address=(PROXY, 0))
        s.sendall(login_head("X-Forwarded-For: 198.51.100.7\r\n") + chunked(body))
        status, answer = read_answer(s)
        self.assertEqual(status, 201, answer)
        self.assertIn("access_token", answer)
        s.close()
        # A trailer naming another client address (or anything else) is refused: the fields
        # after a body are not the request's header.
        s = socket.create_connection(("127.0.0.1", node.port), timeout=10, source_address=(PROXY, 0))
        s.sendall(login_head("X-Forwarded-For: 198.51.100.7\r\n") +
                  chunked(body, "X-Forwarded-For: 203.0.113.9\r\n"))
        status, answer = read_answer(s)
        self.assertEqual(status, 400)
        self.assertEqual(answer["error"]["code"], "bad_request")
        self.assertIn("trailer", answer["error"]["message"])
        s.close()

    def test_a_transfer_encoding_not_ending_in_chunked_is_refused(self):
        node = self.start_node()
        for coding in ("chunked, identity", "gzip", "chunked, chunked"):
            s = node.raw_socket()
            # What the client means as its body is another request: read as one, it would
            # be answered (the smuggling a proxy that frames differently lets through).
            s.sendall(("POST /v1/sessions HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
                       "Transfer-Encoding: %s\r\n\r\nGET /healthz HTTP/1.1\r\nHost: a\r\n\r\n" % coding).encode())
            status, answer = read_answer(s)
            self.assertEqual(status, 400, coding)
            self.assertEqual(answer["error"]["code"], "bad_request")
            self.assertIn("Transfer-Encoding", answer["error"]["message"])
            self.assertEqual(read_to_end(s, 5), b"", "a second answer followed for %r" % coding)
            s.close()


class IdleConnectionsTest(NodeTestCase):
    def test_a_new_connection_must_ask_within_the_request_timeout_a_kept_one_may_idle(self):
        # Before the fix a connection opened only to be held kept its place for the whole
        # idle_timeout (here 60 s), as a keep-alive connection between requests does.
        node = self.start_node(config={"gateway": {"request_timeout_ms": 1000, "idle_timeout_ms": 60000}})
        silent = node.raw_socket(timeout=30)
        self.assertEqual(silent.recv(1), b"", "a connection that never asked is still open")
        silent.close()
        # Between requests a keep-alive connection stays well past request_timeout.
        kept = node.raw_socket(timeout=30)
        for _ in range(2):
            kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
            kept.settimeout(30)
            resp = http.client.HTTPResponse(kept, method="GET")
            resp.begin()
            self.assertEqual(resp.status, 200)
            resp.read()
            time.sleep(3)  # three request timeouts, idle
        kept.close()


if __name__ == "__main__":
    unittest.main()
