"""A small client for petchat's live stream (WebSocket /v1/ws, docs/PROTOCOL.md).

Speaks both encodings with one dict-based API:

- "json"  -> subprotocol petchat.v1.json, text frames, Protobuf's JSON mapping with the
             proto field names (snake_case);
- "proto" -> subprotocol petchat.v1.proto, binary frames, serialized client_frame /
             server_frame. Frames are converted to and from the same JSON-mapping dicts
             (google.protobuf.json_format, proto field names), so tests read frames the same
             way in both encodings: 64-bit integers (seq, ref, *_ms) are strings, enums are
             names, fields with default values may be absent.

A background thread reads every frame as soon as it arrives and keeps it: frames that
arrive while a test waits for something else are buffered, never lost. Two views:

- pending frames, consumed by recv_frame() / wait_for() / wait_ref() (in arrival order);
- the complete log (frames(), events()), never consumed, for "did X arrive" checks.

Python classes for the schema are generated at test time with protoc from
<repo>/proto/client.proto. Standard library plus python3-websocket and python3-protobuf.
"""

import atexit
import importlib.util
import itertools
import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
import urllib.parse
import uuid

import websocket
from google.protobuf import json_format
from websocket import ABNF

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROTO_DIR = os.path.join(REPO_ROOT, "proto")
PROTOC = os.environ.get("PROTOC") or shutil.which("protoc") or "/usr/bin/protoc"

SUBPROTOCOLS = {"json": "petchat.v1.json", "proto": "petchat.v1.proto"}
ENCODINGS = ("json", "proto")

DEFAULT_TIMEOUT_S = 10.0

# ---------------------------------------------------------------------------------------
# Generated Protobuf classes

_pb2 = None
_pb2_lock = threading.Lock()


def pb2():
    """The client_pb2 module generated from proto/client.proto (once per process)."""
    global _pb2
    with _pb2_lock:
        if _pb2 is None:
            out = tempfile.mkdtemp(prefix="petchat-pb2-")
            atexit.register(shutil.rmtree, out, True)
            p = subprocess.run([PROTOC, "--proto_path=" + PROTO_DIR, "--python_out=" + out, "client.proto"],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               timeout=60)
            if p.returncode != 0:
                raise RuntimeError("protoc failed (%s): %s" % (p.returncode, p.stderr.decode(errors="replace")))
            spec = importlib.util.spec_from_file_location("client_pb2", os.path.join(out, "client_pb2.py"))
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            _pb2 = mod
        return _pb2


def encode_client_frame(frame, encoding):
    """JSON-mapping dict -> what goes on the wire (str for json, bytes for proto)."""
    if encoding == "json":
        return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)
    msg = json_format.ParseDict(frame, pb2().client_frame())
    return msg.SerializeToString()


def _camel_keys(d, path=""):
    """Keys in lowerCamelCase anywhere in a frame, except inside body.content (app data)."""
    out = []
    if isinstance(d, dict):
        for k, v in d.items():
            if any(c.isupper() for c in k):
                out.append(path + k)
            if k != "content":
                out += _camel_keys(v, path + k + ".")
    elif isinstance(d, list):
        for v in d:
            out += _camel_keys(v, path)
    return out


def decode_server_frame(data, encoding):
    """Wire payload -> JSON-mapping dict. Raises ValueError if it is not a server_frame."""
    if encoding == "json":
        if isinstance(data, bytes):
            raise ValueError("binary frame on a petchat.v1.json connection: %r" % data[:80])
        try:
            d = json.loads(data)
        except ValueError as e:
            raise ValueError("text frame is not JSON (%s): %r" % (e, data[:200]))
        if not isinstance(d, dict):
            raise ValueError("text frame is not a JSON object: %r" % data[:200])
        try:
            json_format.ParseDict(d, pb2().server_frame(), ignore_unknown_fields=True)
        except json_format.ParseError as e:
            raise ValueError("text frame is not a server_frame (%s): %r" % (e, data[:200]))
        camel = _camel_keys(d)
        if camel:
            raise ValueError("text frame uses lowerCamelCase names %s; docs/PROTOCOL.md says the proto field "
                             "names (snake_case): %r" % (camel, data[:200]))
        return d
    if isinstance(data, str):
        raise ValueError("text frame on a petchat.v1.proto connection: %r" % data[:80])
    msg = pb2().server_frame()
    try:
        msg.ParseFromString(data)
    except Exception as e:  # google.protobuf.message.DecodeError
        raise ValueError("binary frame is not a server_frame (%s): %r" % (e, data[:80]))
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


# ---------------------------------------------------------------------------------------
# Small helpers for frames (JSON-mapping dicts)


def num(d, key, default=0):
    """A (64-bit) integer field of a JSON-mapping dict: strings and numbers accepted, an
    absent field is its default (the mapping omits default values)."""
    if d is None:
        return default
    v = d.get(key)
    if v is None:
        return default
    return int(v)


def frame_kind(frame):
    for k in frame:
        if k != "ref":
            return k
    return None


def ref_of(frame):
    return str(frame.get("ref", "0"))


def is_error(code=None):
    return lambda f: "error" in f and (code is None or f["error"].get("code") == code)


def is_presence(user_id, state=None):
    return lambda f: ("presence" in f and f["presence"].get("user_id") == user_id
                      and (state is None or f["presence"].get("state") == state))


def is_typing(from_id=None):
    return lambda f: "typing" in f and (from_id is None or f["typing"].get("from") == from_id)


def ev_message(message_id=None):
    return lambda e: "message" in e and (message_id is None or e["message"].get("id") == message_id)


def ev_receipt(message_id, status=None):
    return lambda e: ("receipt" in e and e["receipt"].get("message_id") == message_id
                      and (status is None or e["receipt"].get("status") == status))


def ev_read_mark(message_id):
    return lambda e: "read_mark" in e and e["read_mark"].get("message_id") == message_id


def ev_deleted(message_id):
    return lambda e: "deleted" in e and e["deleted"].get("message_id") == message_id


class WSClosed(AssertionError):
    """The connection closed while the test waited for something."""


class WSTimeout(AssertionError):
    pass


class WSProtocolError(AssertionError):
    """The server sent something that is not a valid frame for the negotiated encoding."""


# ---------------------------------------------------------------------------------------
# Client


def ws_url(node, query=None):
    url = "%s://127.0.0.1:%d/v1/ws" % ("wss" if getattr(node, "scheme", "http") == "https" else "ws", node.port)
    if query:
        url += "?" + urllib.parse.urlencode(query)
    return url


def connect(node, token=None, after_seq=None, encoding="json", auth_in="frame", wait_welcome=True,
            timeout=DEFAULT_TIMEOUT_S, offer=None, sockopt=(), reader=True):
    """Opens /v1/ws on `node` and authenticates.

    token: access token (str) or a session dict with "access_token"; None sends no auth.
    auth_in: "frame" (an `auth` frame, the only way to pass after_seq), "header"
        (Authorization: Bearer) or "query" (?access_token=).
    wait_welcome: wait for `welcome` (kept in .welcome); raises WSClosed/AssertionError if
        the server answers with an error or closes instead.
    offer: subprotocols to offer (default: the one of `encoding`; [] offers none).
    sockopt: socket options set before connecting, e.g. a small SO_RCVBUF.
    reader: False leaves incoming frames unread in the socket until start_reading().
    """
    if isinstance(token, dict):
        token = token["access_token"]
    if encoding not in SUBPROTOCOLS:
        raise ValueError("encoding must be one of %s" % (ENCODINGS,))
    if auth_in not in ("frame", "header", "query"):
        raise ValueError("auth_in must be frame, header or query")
    if after_seq is not None and auth_in != "frame":
        raise ValueError("after_seq can only be sent in an auth frame")
    if offer is None:
        offer = [SUBPROTOCOLS[encoding]]
    headers = []
    query = None
    if token is not None and auth_in == "header":
        headers.append("Authorization: Bearer " + token)
    if token is not None and auth_in == "query":
        query = {"access_token": token}
    opts = {"header": headers, "sockopt": tuple(sockopt), "enable_multithread": True}
    if getattr(node, "scheme", "http") == "https":
        opts["sslopt"] = {"ca_certs": node.ca_file}
    if offer:
        opts["subprotocols"] = list(offer)
    ws = websocket.create_connection(ws_url(node, query), timeout=timeout, **opts)
    client = WSClient(ws, encoding, offered=list(offer))
    if offer and client.subprotocol != SUBPROTOCOLS[encoding].lower():
        client.close()
        raise AssertionError("asked for subprotocol %r, the server chose %r" % (SUBPROTOCOLS[encoding],
                                                                            client.subprotocol))
    if reader:
        client.start_reading()
    if token is not None and auth_in == "frame":
        auth = {"access_token": token}
        if after_seq is not None:
            auth["after_seq"] = str(after_seq)
        client.send_frame({"ref": client.next_ref(), "auth": auth})
    if wait_welcome:
        if not reader:
            raise ValueError("wait_welcome needs reader=True")
        try:
            f = client.wait_for(lambda f: "welcome" in f or "error" in f, timeout, what="welcome")
        except Exception:
            client.close()
            raise
        if "error" in f:
            client.close()
            raise AssertionError("authentication answered with error %r (close code %s)"
                                 % (f["error"], client.close_code))
        client.welcome = f["welcome"]
    return client


class WSClient:
    def __init__(self, ws, encoding, offered=()):
        self.ws = ws
        self.encoding = encoding
        self.offered = list(offered)
        self.subprotocol = ws.getsubprotocol()
        self.welcome = None
        self.close_code = None  # code of the server's close frame; 1005 if it had none
        self.close_reason = None
        self.closed_by = None  # "frame" (close frame received) or "eof" (dropped) or "client"
        self._cv = threading.Condition(threading.RLock())
        self._log = []  # every decoded frame, in arrival order
        self.largest_frame = 0  # bytes of the largest message (frame payload) received
        self._pending = {}  # log index -> frame, not yet consumed (dicts keep insertion order)
        self._by_ref = {}  # ref -> log index of the frames that carry it
        self._events = []  # (log index, event dict)
        self._protocol_errors = []
        self._closed = False
        self._closing = False
        self._refs = itertools.count(1)
        self._thread = None
        self._frag_opcode = None
        self._frag_data = b""

    # -- reading -------------------------------------------------------------------------

    def start_reading(self):
        if self._thread is not None:
            return
        try:
            self.ws.settimeout(None)  # the reader blocks; close() unblocks it with shutdown()
        except Exception:
            pass
        self._thread = threading.Thread(target=self._reader, daemon=True, name="wsclient-reader")
        self._thread.start()

    def _reader(self):
        try:
            while True:
                fr = self.ws.recv_frame()
                op = fr.opcode
                if op in (ABNF.OPCODE_TEXT, ABNF.OPCODE_BINARY):
                    if fr.fin:
                        self._deliver(op, fr.data)
                    else:
                        self._frag_opcode, self._frag_data = op, fr.data
                elif op == ABNF.OPCODE_CONT:
                    self._frag_data += fr.data
                    if fr.fin:
                        op, data = self._frag_opcode, self._frag_data
                        self._frag_opcode, self._frag_data = None, b""
                        self._deliver(op, data)
                elif op == ABNF.OPCODE_CLOSE:
                    data = fr.data or b""
                    code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 1005
                    reason = data[2:].decode("utf-8", "replace")
                    self._mark_closed(code, reason, "frame")
                    try:
                        self.ws.send_close(1000)
                    except Exception:
                        pass
                    return
                elif op == ABNF.OPCODE_PING:
                    try:
                        self.ws.pong(fr.data)
                    except Exception:
                        pass
        except Exception as e:
            self._mark_closed(None, repr(e), "client" if self._closing else "eof")

    def _deliver(self, opcode, data):
        self.largest_frame = max(self.largest_frame, len(data))
        if opcode == ABNF.OPCODE_TEXT and isinstance(data, bytes):
            data = data.decode("utf-8")
        try:
            frame = decode_server_frame(data, self.encoding)
        except ValueError as e:
            with self._cv:
                self._protocol_errors.append(str(e))
                self._cv.notify_all()
            return
        with self._cv:
            i = len(self._log)
            self._log.append(frame)
            self._pending[i] = frame
            r = ref_of(frame)
            if r != "0":
                self._by_ref.setdefault(r, []).append(i)
            if "event" in frame:
                self._events.append((i, frame["event"]))
            self._cv.notify_all()

    def _mark_closed(self, code, reason, by):
        with self._cv:
            if not self._closed:
                self._closed = True
                self.close_code = code
                self.close_reason = reason
                self.closed_by = by
            self._cv.notify_all()

    @property
    def closed(self):
        with self._cv:
            return self._closed

    def _check_protocol(self):
        if self._protocol_errors:
            errs, self._protocol_errors = self._protocol_errors, []
            raise WSProtocolError("the server sent invalid frames: %s" % "; ".join(errs))

    def _describe(self, what):
        tail = [f for f in list(self._pending.values())[-8:]]
        return ("%s: closed=%s close_code=%s (%s) last pending frames: %s"
                % (what, self._closed, self.close_code, self.close_reason, json.dumps(tail)[:1500]))

    # -- consuming -----------------------------------------------------------------------

    def recv_frame(self, timeout=DEFAULT_TIMEOUT_S):
        """The oldest frame not consumed yet."""
        return self.wait_for(lambda f: True, timeout, what="any frame")

    def wait_for(self, pred, timeout=DEFAULT_TIMEOUT_S, what="a matching frame"):
        """Consumes and returns the oldest pending frame matching `pred`; other frames stay
        pending. Raises WSClosed if the connection closed first, WSTimeout on timeout."""
        deadline = time.monotonic() + timeout
        with self._cv:
            self._check_protocol()
            for i, f in self._pending.items():
                if pred(f):
                    del self._pending[i]
                    return f
            pos = len(self._log)
            while True:
                while pos < len(self._log):
                    i = pos
                    pos += 1
                    f = self._pending.get(i)
                    if f is not None and pred(f):
                        del self._pending[i]
                        return f
                self._check_protocol()
                if self._closed:
                    raise WSClosed(self._describe("connection closed while waiting for " + what))
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WSTimeout(self._describe("no %s within %.1f s" % (what, timeout)))
                self._cv.wait(remaining)

    def wait_ref(self, ref, timeout=DEFAULT_TIMEOUT_S):
        """Consumes and returns the server's direct answer to the client frame with `ref`."""
        ref = str(ref)
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                for i in self._by_ref.get(ref, ()):
                    f = self._pending.pop(i, None)
                    if f is not None:
                        return f
                self._check_protocol()
                if self._closed:
                    raise WSClosed(self._describe("connection closed while waiting for the answer to ref %s" % ref))
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WSTimeout(self._describe("no answer to ref %s within %.1f s" % (ref, timeout)))
                self._cv.wait(remaining)

    def wait_event(self, pred, timeout=DEFAULT_TIMEOUT_S, what="a matching event"):
        """Returns the first mailbox event (the `event` object) received on this connection
        that matches `pred`, waiting for it if needed. Does not consume anything."""
        deadline = time.monotonic() + timeout
        with self._cv:
            pos = 0
            while True:
                while pos < len(self._events):
                    ev = self._events[pos][1]
                    pos += 1
                    if pred(ev):
                        return ev
                self._check_protocol()
                if self._closed:
                    raise WSClosed(self._describe("connection closed while waiting for " + what))
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WSTimeout(self._describe("no %s within %.1f s; events: %s"
                                                   % (what, timeout, json.dumps(self.events())[:1500])))
                self._cv.wait(remaining)

    def wait_seq(self, seq, timeout=DEFAULT_TIMEOUT_S):
        """Waits until an event with seq >= `seq` arrived; returns events()."""
        self.wait_event(lambda e: num(e, "seq") >= seq, timeout, what="event seq >= %d" % seq)
        return self.events()

    def wait_until(self, cond, timeout=DEFAULT_TIMEOUT_S, what="condition"):
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                if cond():
                    return
                self._check_protocol()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WSTimeout(self._describe("%s not met within %.1f s" % (what, timeout)))
                self._cv.wait(min(remaining, 0.2) if self._closed else remaining)

    def wait_closed(self, timeout=DEFAULT_TIMEOUT_S):
        """Waits until the server closed the connection; returns the close code (1005: a
        close frame without code; None: dropped without a close frame)."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WSTimeout(self._describe("connection still open after %.1f s" % timeout))
                self._cv.wait(remaining)
            return self.close_code

    def frames(self):
        """Every frame received so far (consumed or not), in arrival order."""
        with self._cv:
            return list(self._log)

    def pending(self):
        with self._cv:
            return list(self._pending.values())

    def events(self):
        """Every mailbox event (the `event` objects) received so far, in arrival order."""
        with self._cv:
            return [e for _, e in self._events]

    def seqs(self):
        return [num(e, "seq") for e in self.events()]

    def max_seq(self):
        s = self.seqs()
        return max(s) if s else 0

    # -- sending -------------------------------------------------------------------------

    def next_ref(self):
        return str(next(self._refs))

    def send_frame(self, frame):
        """Sends one client_frame given in its JSON mapping (dict), in this connection's
        encoding."""
        payload = encode_client_frame(frame, self.encoding)
        if isinstance(payload, bytes):
            self.ws.send_binary(payload)
        else:
            self.ws.send(payload)

    def send_raw(self, data):
        """Sends a text (str) or binary (bytes) frame as is."""
        if isinstance(data, bytes):
            self.ws.send_binary(data)
        else:
            self.ws.send(data)

    def request(self, frame, timeout=DEFAULT_TIMEOUT_S):
        """Sends `frame` with a fresh ref and returns the server's direct answer."""
        frame = dict(frame)
        frame["ref"] = self.next_ref()
        self.send_frame(frame)
        return self.wait_ref(frame["ref"], timeout)

    @staticmethod
    def send_body(to, text, client_id=None, ttl_s=None, content=None):
        send = {"client_id": client_id or uuid.uuid4().hex, "to": to, "body": {"text": text}}
        if content is not None:
            send["body"]["content"] = content
        if ttl_s is not None:
            send["ttl_s"] = ttl_s
        return send

    def send_async(self, to, text, client_id=None, ttl_s=None, content=None):
        """Sends a `send` frame without waiting; returns its ref (see wait_ref)."""
        ref = self.next_ref()
        self.send_frame({"ref": ref, "send": self.send_body(to, text, client_id, ttl_s, content)})
        return ref

    def try_send(self, to, text, client_id=None, ttl_s=None, ref=None, content=None, timeout=DEFAULT_TIMEOUT_S):
        """Sends a message; returns the whole answer frame (accepted or error)."""
        ref = str(ref) if ref is not None else self.next_ref()
        self.send_frame({"ref": ref, "send": self.send_body(to, text, client_id, ttl_s, content)})
        return self.wait_ref(ref, timeout)

    def send_message(self, to, text, client_id=None, ttl_s=None, ref=None, content=None,
                     timeout=DEFAULT_TIMEOUT_S):
        """Sends a message and returns the `accepted` object; fails on anything else.
        Frames that arrive meanwhile (events, presence) stay buffered."""
        f = self.try_send(to, text, client_id, ttl_s, ref, content, timeout)
        if "accepted" not in f:
            raise AssertionError("send to %r was answered with %s, want accepted" % (to, json.dumps(f)))
        return f["accepted"]

    def ack(self, seq, wait=False, timeout=DEFAULT_TIMEOUT_S):
        """Acknowledges up to seq. wait=True sends a ref and waits for the `acked` answer
        (the position is then durable); returns that frame."""
        if not wait:
            self.send_frame({"ack": {"seq": str(seq)}})
            return None
        f = self.request({"ack": {"seq": str(seq)}}, timeout)
        if "acked" not in f:
            raise AssertionError("ack %s was answered with %s" % (seq, json.dumps(f)))
        return f

    def read(self, conversation_id, message_id, ref=None):
        frame = {"read": {"conversation_id": conversation_id, "message_id": message_id}}
        if ref is not None:
            frame["ref"] = str(ref)
        self.send_frame(frame)

    def typing(self, to, active=True):
        self.send_frame({"typing": {"to": to, "active": active}})

    def ping(self, timeout=DEFAULT_TIMEOUT_S):
        f = self.request({"ping": {}}, timeout)
        if "pong" not in f:
            raise AssertionError("ping was answered with %s" % json.dumps(f))
        return f

    def sync(self, timeout=DEFAULT_TIMEOUT_S):
        """A ping round trip: the server has handled every frame sent before it."""
        self.ping(timeout)

    # -- closing -------------------------------------------------------------------------

    def close(self, code=1000, timeout=2.0):
        """Closes (close frame, then the socket). Never raises."""
        self._closing = True
        if not self.closed:
            try:
                self.ws.send_close(code)
            except Exception:
                pass
            if self._thread is not None:
                try:
                    self.wait_closed(timeout)
                except Exception:
                    pass
        sock = self.ws.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except Exception:
                pass
        if self._thread is not None:
            self._thread.join(timeout)
        try:
            self.ws.shutdown()
        except Exception:
            pass
        self._mark_closed(None, "closed by the client", "client")
