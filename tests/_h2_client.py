"""Frame-level HTTP/2 test client (run by tests/h2_*_test.ts with /usr/bin/python3).

Usage: _h2_client.py PORT SCENARIO [N] [PATH]

PATH is the request path of the scenarios that take one ("/" by default); for
"sequential" it is a comma-separated list of AUTHORITY/PATH, one GET each on
streams 1, 3, 5, ... one after the other over the one connection.

Sends a scenario's frames (built with hyperframe and hpack, so nothing stops
us sending what a well-behaved client would not), then reads until the server
sends GOAWAY, closes, or the scenario's stop condition, and prints a JSON
summary: goaway [code, last_stream], rst {stream: code}, status {stream: status},
ping_acks, data {stream: bytes}, body {stream: text (first 4096 bytes, latin-1)},
ended [streams that got END_STREAM], sent (bytes), send_error, closed.
The environment's H2_SOURCE, when set, is the address to connect from.
"""
import json
import os
import socket
import struct
import sys
import time

from hpack import Encoder, Decoder
from hyperframe.frame import (
    ContinuationFrame, DataFrame, GoAwayFrame, HeadersFrame, PingFrame,
    RstStreamFrame, SettingsFrame, WindowUpdateFrame,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
port = int(sys.argv[1])
scenario = sys.argv[2]
n = int(sys.argv[3]) if len(sys.argv) > 3 else 0
path_arg = sys.argv[4] if len(sys.argv) > 4 else "/"

# H2_SOURCE: the source address to connect from (any when unset)
sock = socket.create_connection(("127.0.0.1", port), source_address=(os.environ.get("H2_SOURCE", ""), 0))
sock.settimeout(10)
enc = Encoder()
dec = Decoder()
dec.max_allowed_table_size = 65536
out = {"goaway": None, "rst": {}, "status": {}, "ping_acks": 0, "data": {}, "body": {},
       "ended": [], "sent": 0, "send_error": False, "closed": False}
inbuf = b""


def send(b):
    try:
        sock.sendall(b)
        out["sent"] += len(b)
    except OSError:
        out["send_error"] = True
        raise


def frame(ftype, flags, sid, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


def headers(sid, fields, end_stream=True):
    f = HeadersFrame(sid)
    f.data = enc.encode(fields)
    f.flags.add("END_HEADERS")
    if end_stream:
        f.flags.add("END_STREAM")
    return f.serialize()


def get(sid, path="/", extra=(), end_stream=True):
    fields = [(":method", "GET"), (":scheme", "http"), (":authority", "t"), (":path", path)]
    return headers(sid, fields + list(extra), end_stream)


def rst(sid, code=8):
    return RstStreamFrame(sid, error_code=code).serialize()


def ping(data=b"12345678"):
    return PingFrame(0, opaque_data=data).serialize()


def start(settings=None):
    send(PREFACE + SettingsFrame(0, settings=settings or {}).serialize())


def read_frames(stop, through_goaway=False):
    """Reads frames until stop(type, flags, sid, payload) is true, GOAWAY or close.

    With through_goaway, a GOAWAY is recorded (and announced on stdout as a line
    "GOAWAY") and reading goes on."""
    global inbuf
    while True:
        while len(inbuf) >= 9:
            length = int.from_bytes(inbuf[0:3], "big")
            if len(inbuf) < 9 + length:
                break
            ftype, flags = inbuf[3], inbuf[4]
            sid = int.from_bytes(inbuf[5:9], "big") & 0x7FFFFFFF
            payload = inbuf[9:9 + length]
            inbuf = inbuf[9 + length:]
            if ftype == 0x4 and not flags & 1:
                send(SettingsFrame(0, flags=["ACK"]).serialize())
            elif ftype == 0x1:
                fields = dec.decode(payload)
                for k, v in fields:
                    if k in (b":status", ":status"):
                        out["status"][str(sid)] = int(v)
            elif ftype == 0x0:
                out["data"][str(sid)] = out["data"].get(str(sid), 0) + length
                text = out["body"].get(str(sid), "")
                if len(text) < 4096:
                    out["body"][str(sid)] = (text + payload.decode("latin-1"))[:4096]
            elif ftype == 0x3:
                out["rst"][str(sid)] = int.from_bytes(payload[0:4], "big")
            elif ftype == 0x6 and flags & 1:
                out["ping_acks"] += 1
            elif ftype == 0x7:
                last = int.from_bytes(payload[0:4], "big") & 0x7FFFFFFF
                out["goaway"] = [int.from_bytes(payload[4:8], "big"), last]
                if not through_goaway:
                    return
                print("GOAWAY", flush=True)
            if ftype in (0x0, 0x1) and flags & 1:
                out["ended"].append(sid)
            if stop(ftype, flags, sid, payload):
                return
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            chunk = b""
        if not chunk:
            out["closed"] = True
            return
        inbuf += chunk


def until_ping_ack(ftype, flags, sid, payload):
    return ftype == 0x6 and flags & 1


def never(*_):
    return False


def run():
    if scenario == "rapid_reset":
        start()
        batch = b""
        for i in range(n):
            sid = 2 * i + 1
            batch += get(sid) + rst(sid)
            if len(batch) > 16384:
                try:
                    send(batch)
                except OSError:
                    break
                batch = b""
        if batch:
            try:
                send(batch)
            except OSError:
                pass
        read_frames(never)
    elif scenario == "ping_flood":
        start()
        try:
            send(ping() * n)
        except OSError:
            pass
        read_frames(never)
    elif scenario == "settings_flood":
        start()
        try:
            send(SettingsFrame(0, settings={4: 65535}).serialize() * n)
        except OSError:
            pass
        read_frames(never)
    elif scenario == "window_update_flood":
        start()
        try:
            send(WindowUpdateFrame(0, window_increment=1).serialize() * n)
        except OSError:
            pass
        read_frames(never)
    elif scenario == "empty_data_flood":
        start()
        send(headers(1, [(":method", "POST"), (":scheme", "http"), (":authority", "t"),
                         (":path", "/echo")], end_stream=False))
        try:
            send(DataFrame(1, data=b"").serialize() * n)
        except OSError:
            pass
        read_frames(never)
    elif scenario == "continuation_flood":
        start()
        f = HeadersFrame(1)
        f.data = enc.encode([(":method", "GET"), (":scheme", "http"), (":path", "/")])
        send(f.serialize())
        cont = ContinuationFrame(1, data=b"\x40\x01a\x01b" * 3000).serialize()
        try:
            while out["sent"] < 8 * 1024 * 1024:
                send(cont)
        except OSError:
            pass
        read_frames(never)
    elif scenario == "stream_id_reuse":
        start()
        send(get(3))
        read_frames(lambda t, fl, sid, p: t == 0x0 and fl & 1 and sid == 3)
        send(get(1))
        read_frames(never)
    elif scenario == "data_on_closed":
        start()
        send(get(1))
        read_frames(lambda t, fl, sid, p: t == 0x0 and fl & 1 and sid == 1)
        send(DataFrame(1, data=b"late").serialize() + ping())
        read_frames(until_ping_ack)
        send(get(3))
        read_frames(lambda t, fl, sid, p: t == 0x0 and fl & 1 and sid == 3)
    elif scenario == "data_on_idle":
        start()
        send(DataFrame(5, data=b"x").serialize())
        read_frames(never)
    elif scenario == "frame_too_large":
        start()
        send(headers(1, [(":method", "POST"), (":scheme", "http"), (":path", "/echo")], False))
        send(frame(0x0, 0, 1, b"x" * 20000))
        read_frames(never)
    elif scenario.startswith("setting_"):  # setting_ID_VALUE
        _, sid, value = scenario.split("_")
        send(PREFACE + frame(0x4, 0, 0, struct.pack(">HI", int(sid), int(value))))
        read_frames(never)
    elif scenario == "window_update_zero":
        start()
        send(WindowUpdateFrame(0, window_increment=0).serialize())
        read_frames(never)
    elif scenario == "window_update_overflow":
        start()
        send(WindowUpdateFrame(0, window_increment=0x7FFFFFFF).serialize())
        read_frames(never)
    elif scenario == "headers_interleaved":
        start()
        f = HeadersFrame(1)
        f.data = enc.encode([(":method", "GET"), (":scheme", "http"), (":path", "/")])
        send(f.serialize() + ping())
        read_frames(never)
    elif scenario == "hpack_bomb":
        start()
        big = ("x-big", "v" * 4000)
        # the first field is indexed, the 100 copies are one byte each: 400 KB decoded
        send(get(1, extra=[big] * 100))
        read_frames(lambda t, fl, sid, p: sid == 1 and (t == 0x3 or (t == 0x1 and fl & 1)))
        send(get(3, extra=[big]))
        read_frames(lambda t, fl, sid, p: t == 0x0 and fl & 1 and sid == 3)
    elif scenario == "content_length_over":
        start()
        send(headers(1, [(":method", "POST"), (":scheme", "http"), (":path", "/echo"),
                         ("content-length", "5")], False))
        send(DataFrame(1, data=b"0123456789", flags=["END_STREAM"]).serialize())
        read_frames(lambda t, fl, sid, p: t == 0x3 and sid == 1)
        send(ping())
        read_frames(until_ping_ack)
    elif scenario == "zero_window":
        # our stream window is 0: the server's response can never be sent
        start({4: 0})
        send(get(1, "/bytes/100000"))
        read_frames(lambda t, fl, sid, p: t == 0x3 and sid == 1)
        send(ping())
        read_frames(until_ping_ack)
    elif scenario == "silent_upload":
        start()
        send(headers(1, [(":method", "POST"), (":scheme", "http"), (":path", "/hash")], False))
        read_frames(lambda t, fl, sid, p: t == 0x3 and sid == 1)
        send(ping())
        read_frames(until_ping_ack)
    elif scenario == "no_read":
        start()
        send(get(1, "/bytes/10000000"))
        time.sleep(float(n or 1000) / 1000)
    elif scenario == "idle":
        start()
        read_frames(never)
    elif scenario == "malformed":
        # one bad request per stream; stream 99 is a good one
        cases = [
            [(":method", "GET"), (":scheme", "http"), (":path", "/"), ("X-Upper", "1")],
            [(":method", "GET"), (":scheme", "http"), (":path", "/"), ("connection", "close")],
            [(":method", "GET"), (":scheme", "http"), (":path", "/"), ("te", "gzip")],
            [(":method", "GET"), (":scheme", "http")],
            [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":status", "200")],
            [(":method", "GET"), (":scheme", "http"), ("accept", "x"), (":path", "/")],
            [(":method", "GET"), (":scheme", "http"), (":path", "/"), ("x-a", " padded")],
            [(":method", "GET"), (":scheme", "http"), (":path", "*")],
            [(":method", "GET"), (":method", "GET"), (":scheme", "http"), (":path", "/")],
            [(":method", "GET"), (":scheme", "http"), (":path", "/"), ("transfer-encoding", "chunked")],
            [(":method", "GET"), (":scheme", "http"), (":path", "")],
            [(":method", "GET"), (":scheme", "http"), (":path", "/"), ("x-a", "a\x00b")],
            [(":method", "CONNECT"), (":authority", "example.com:443")],
        ]
        start()
        batch = b""
        for i, c in enumerate(cases):
            batch += headers(2 * i + 1, c)
        send(batch + get(99))
        read_frames(lambda t, fl, sid, p: t == 0x0 and fl & 1 and sid == 99)
    elif scenario == "content_length_over_batch":
        # HEADERS and the too long DATA in one write: the server sees both at once
        start()
        send(headers(1, [(":method", "POST"), (":scheme", "http"), (":authority", "t"),
                         (":path", path_arg), ("content-length", "5")], False)
             + DataFrame(1, data=b"0123456789", flags=["END_STREAM"]).serialize())
        read_frames(lambda t, fl, sid, p: t == 0x3 and sid == 1)
        send(ping())
        read_frames(until_ping_ack)
    elif scenario == "content_length_under_batch":
        start()
        send(headers(1, [(":method", "POST"), (":scheme", "http"), (":authority", "t"),
                         (":path", path_arg), ("content-length", "10")], False)
             + DataFrame(1, data=b"01234", flags=["END_STREAM"]).serialize())
        read_frames(lambda t, fl, sid, p: t == 0x3 and sid == 1)
        send(ping())
        read_frames(until_ping_ack)
    elif scenario == "content_length_over_late":
        # HEADERS first; the DATA that breaks content-length once the request is under way
        start()
        send(headers(1, [(":method", "POST"), (":scheme", "http"), (":authority", "t"),
                         (":path", path_arg), ("content-length", "5")], False))
        sys.stdin.readline()  # the test says when the request head reached the backend
        send(DataFrame(1, data=b"0123456789", flags=["END_STREAM"]).serialize())
        read_frames(lambda t, fl, sid, p: t == 0x3 and sid == 1)
        send(ping())
        read_frames(until_ping_ack)
    elif scenario == "window_settings":
        # SETTINGS_INITIAL_WINDOW_SIZE changed while stream 1 is open (RFC 9113 §6.9.2):
        # raised from 1000 it lets the stream go on; then lowered below what was sent,
        # it leaves the window negative until WINDOW_UPDATE lifts it over zero again
        start({4: 1000})
        send(get(1, "/bytes/100000") + WindowUpdateFrame(0, window_increment=1 << 20).serialize())
        read_frames(lambda t, fl, sid, p: out["data"].get("1", 0) >= 1000)
        send(ping())
        read_frames(until_ping_ack)
        out.setdefault("marks", {})["at_1000"] = out["data"].get("1", 0)  # the stream window held the rest back
        send(SettingsFrame(0, settings={4: 40000}).serialize())
        read_frames(lambda t, fl, sid, p: out["data"].get("1", 0) >= 40000)
        send(ping())
        read_frames(until_ping_ack)
        out["marks"]["at_40000"] = out["data"].get("1", 0)
        # lowered by 30000: the stream's window is now -30000
        send(SettingsFrame(0, settings={4: 10000}).serialize())
        send(WindowUpdateFrame(1, window_increment=30000).serialize() + ping())
        read_frames(until_ping_ack)
        out["marks"]["after_lowering"] = out["data"].get("1", 0)  # back to 0: still nothing sent
        send(WindowUpdateFrame(1, window_increment=100000).serialize())
        read_frames(lambda t, fl, sid, p: t == 0x0 and fl & 1 and sid == 1)
    elif scenario == "padded":
        # a padded HEADERS frame with the PRIORITY flag, then padded DATA: the padding
        # is skipped, and counted against flow control (RFC 9113 §6.1, §6.2)
        start()
        block = enc.encode([(":method", "POST"), (":scheme", "http"), (":authority", "t"),
                            (":path", "/echo")])
        priority = struct.pack(">IB", 0, 15)  # no dependency, weight 16
        send(frame(0x1, 0x4 | 0x8 | 0x20, 1, bytes([7]) + priority + block + b"\0" * 7))
        send(frame(0x0, 0x8, 1, bytes([20]) + b"hello, " + b"\0" * 20))
        send(frame(0x0, 0x8 | 0x1, 1, bytes([0]) + b"padded world"))
        read_frames(lambda t, fl, sid, p: t in (0x0, 0x1) and fl & 1 and sid == 1 or t == 0x3)
    elif scenario == "sequential":
        start()
        for i, item in enumerate(path_arg.split(",")):
            sid = 2 * i + 1
            authority, _, path = item.partition("/")
            send(headers(sid, [(":method", "GET"), (":scheme", "http"),
                               (":authority", authority), (":path", "/" + path)]))
            read_frames(lambda t, fl, s, p: s == sid and (t in (0x0, 0x1) and fl & 1 or t == 0x3))
    elif scenario == "flood_during_get":
        # GET PATH on stream 1, then N 1-byte connection WINDOW_UPDATEs (credit for
        # nothing sent); read until stream 1 ends, through the GOAWAY (announced)
        start()
        send(get(1, path_arg))
        try:
            send(WindowUpdateFrame(0, window_increment=1).serialize() * n)
        except OSError:
            pass
        read_frames(lambda t, fl, sid, p: t in (0x0, 0x1) and fl & 1 and sid == 1
                    or t == 0x3 and sid == 1, through_goaway=True)
    elif scenario == "self_dependent_headers":
        # HEADERS on stream 1 whose priority block names stream 1 (RFC 9113 §5.3.1),
        # then a good GET on stream 3
        start()
        block = enc.encode([(":method", "GET"), (":scheme", "http"), (":authority", "t"),
                            (":path", "/")])
        send(frame(0x1, 0x4 | 0x1 | 0x20, 1, struct.pack(">IB", 1, 15) + block))
        read_frames(lambda t, fl, sid, p: sid == 1 and t in (0x1, 0x3))
        send(get(3))
        read_frames(lambda t, fl, sid, p: t == 0x0 and fl & 1 and sid == 3)
    elif scenario == "self_dependent_priority":
        # a GET on stream 1 that waits (PATH), PRIORITY making stream 1 depend on itself,
        # PRIORITY making idle stream 5 depend on itself, then a good GET on stream 3
        start()
        send(get(1, path_arg))
        send(frame(0x2, 0, 1, struct.pack(">IB", 1, 15)))
        send(frame(0x2, 0, 5, struct.pack(">IB", 5, 15)))
        read_frames(lambda t, fl, sid, p: t == 0x3 and sid == 5)
        send(get(3))
        read_frames(lambda t, fl, sid, p: t == 0x0 and fl & 1 and sid == 3)
    elif scenario == "get_through_goaway":
        # one GET on stream 1, read until it ends (a GOAWAY on the way is announced)
        start()
        send(get(1, path_arg))
        read_frames(lambda t, fl, sid, p: t in (0x0, 0x1) and fl & 1 and sid == 1
                    or t == 0x3 and sid == 1, through_goaway=True)
    else:
        raise SystemExit("unknown scenario " + scenario)


try:
    run()
except OSError:
    pass
print(json.dumps(out))
