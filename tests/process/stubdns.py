"""A nameserver for tests (UDP on 127.0.0.1): names it knows answer with their IPv4 address
(A; AAAA has no data), others are NXDOMAIN, and a name that is stalled gets no answer at all
— a host whose nameserver never answers.

    dns = StubDns({"fast.push.test": "127.0.0.1"})
    node config: push.nameservers = ["127.0.0.1:%d" % dns.port]
    dns.stall("slow.push.test"); dns.wait_query("slow.push.test", 1, 20.0); dns.release(...)
"""

import socket
import struct
import threading
import time

A, AAAA = 1, 28


def _read_name(packet, at):
    labels = []
    while True:
        n = packet[at]
        at += 1
        if n == 0:
            return ".".join(labels).lower(), at
        if n & 0xC0:
            raise ValueError("compressed names do not occur in questions")
        labels.append(packet[at:at + n].decode("ascii", "replace"))
        at += n


class StubDns:

    def __init__(self, names=None):
        self._names = {k.lower(): v for k, v in (names or {}).items()}
        self._stalled = set()
        self._cv = threading.Condition()
        self.queries = []  # (name, qtype, answered)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True, name="stubdns")
        self._thread.start()

    def close(self):
        self._stop = True
        self._thread.join(5)
        self._sock.close()

    @property
    def nameserver(self):
        """As push.nameservers takes it."""
        return "127.0.0.1:%d" % self.port

    def stall(self, name):
        with self._cv:
            self._stalled.add(name.lower())

    def release(self, name):
        with self._cv:
            self._stalled.discard(name.lower())

    def unanswered(self, name):
        """Queries for `name` that got no answer."""
        with self._cv:
            return sum(1 for q in self.queries if q[0] == name.lower() and not q[2])

    def wait_query(self, name, n, timeout, answered=None):
        """Waits until `n` queries for `name` (with that answered flag, if given) arrived."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                got = [q for q in self.queries if q[0] == name.lower() and (answered is None or q[2] == answered)]
                if len(got) >= n:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("%d of %d queries for %s in %.0f s: %r" % (len(got), n, name, timeout,
                                                                                   self.queries))
                self._cv.wait(left)

    def _serve(self):
        while not self._stop:
            try:
                packet, peer = self._sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                reply = self._answer(packet)
            except (ValueError, IndexError, struct.error):
                continue  # not a query we understand: no answer
            if reply is not None:
                self._sock.sendto(reply, peer)

    def _answer(self, packet):
        qid, flags, qdcount = struct.unpack("!HHH", packet[:6])
        if flags & 0x8000 or qdcount != 1:
            raise ValueError("not one question")
        name, at = _read_name(packet, 12)
        qtype, qclass = struct.unpack("!HH", packet[at:at + 4])
        question = packet[12:at + 4]
        with self._cv:
            stalled = name in self._stalled
            self.queries.append((name, qtype, not stalled))
            self._cv.notify_all()
            address = self._names.get(name)
        if stalled:
            return None
        rcode, answers = 0, b""
        if address is None:
            rcode = 3  # NXDOMAIN
        elif qtype == A:
            rdata = socket.inet_aton(address)
            answers = struct.pack("!HHHIH", 0xC00C, A, 1, 5, len(rdata)) + rdata
        header = struct.pack("!HHHHHH", qid, 0x8180 | (flags & 0x0100) | rcode, 1, 1 if answers else 0, 0, 0)
        return header + question + answers
