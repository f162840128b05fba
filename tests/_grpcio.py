#!/usr/bin/python3
"""A grpcio (C-core gRPC, Debian python3-grpcio) server and client for the tests.

Driven from Deno by tests/_grpcio.ts; run by hand as
  /usr/bin/python3 tests/_grpcio.py server --name b1
  /usr/bin/python3 tests/_grpcio.py client --target 127.0.0.1:PORT --mode unary --calls 10

Messages are raw bytes (no .proto): generic handlers with identity serializers.

Server methods (service t.Test, the same names as tests/_grpc.ts's grpc-js server):
  Unary     answers "NAME: hello REQUEST" ("hello REQUEST" without --name)
  Fail      fails with NOT_FOUND, details "no such thing"
  Many      server stream; request "n=5000 size=0 every_ms=0": n messages "message I"
            (padded with "." to size bytes), every_ms milliseconds apart
  Sum       client stream of decimal numbers; answers "SUM COUNT"
  Echo      bidi: each message sent back as it arrives
  Hang      never answers; prints "started Hang", then "cancelled Hang" when the
            call is cancelled or its deadline passes
  Slow      unary; request "MS": sleeps MS milliseconds, then answers "NAME: slept MS"
  Deadline  unary; answers the call's remaining deadline in seconds ("none" without one)
  grpc.health.v1.Health/Check  the standard health check: request field 1 = service
            name; answers status SERVING (0x08 0x01) or NOT_SERVING (0x08 0x02),
            NOT_FOUND for a service it was never told about ("" is SERVING at start)

Every method waits --delay-ms (changeable at runtime) before its first message.
The server prints "listening PORT" once it serves, and for each call
"started METHOD" (and "cancelled METHOD" when cancelled). Lines on stdin:
  health SERVING|NOT_SERVING [SERVICE]   set a health status
  delay MS                               set the delay before first messages
  stats                                  print "stats {JSON calls per method}"
each answered with "ack LINE" once applied.

The client runs one mode and prints one JSON line (see summary() below) on stdout.
"""
import argparse
import asyncio
import inspect
import json
import sys
import threading
import time

import grpc

NAME = ""
DELAY_MS = 0.0
HEALTH = {"": 1}
CALLS = {}
FAIL_DETAILS = "no such thing"


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def kv(text, **defaults):
    """Parses "a=1 b=2" into numbers, over the defaults."""
    for part in text.split():
        key, _, value = part.partition("=")
        defaults[key] = float(value)
    return defaults


def prefixed(text):
    return (NAME + ": " if NAME else "") + text


async def started(method, context):
    CALLS[method] = CALLS.get(method, 0) + 1
    out("started " + method)
    if DELAY_MS > 0:
        await asyncio.sleep(DELAY_MS / 1000)


def reporting(method, handler):
    """Wraps `handler` to print "cancelled METHOD" when its call is cancelled."""
    async def unary_handler(request, context):
        try:
            return await handler(request, context)
        except asyncio.CancelledError:
            out("cancelled " + method)
            raise

    async def stream_handler(request, context):
        try:
            async for m in handler(request, context):
                yield m
        except asyncio.CancelledError:
            out("cancelled " + method)
            raise

    return stream_handler if inspect.isasyncgenfunction(handler) else unary_handler


async def unary(request, context):
    await started("Unary", context)
    return prefixed("hello ").encode() + request


async def fail(request, context):
    await started("Fail", context)
    await context.abort(grpc.StatusCode.NOT_FOUND, FAIL_DETAILS)


async def many(request, context):
    await started("Many", context)
    opts = kv(request.decode(), n=5000, size=0, every_ms=0)
    for i in range(int(opts["n"])):
        if i and opts["every_ms"] > 0:
            await asyncio.sleep(opts["every_ms"] / 1000)
        text = "message %d" % i
        yield (text + "." * max(0, int(opts["size"]) - len(text))).encode()


async def sum_(request_iterator, context):
    await started("Sum", context)
    total = count = 0
    async for m in request_iterator:
        total += int(m.decode() or 0)
        count += 1
    return ("%d %d" % (total, count)).encode()


async def echo(request_iterator, context):
    await started("Echo", context)
    async for m in request_iterator:
        yield m


async def hang(request, context):
    await started("Hang", context)
    await asyncio.Event().wait()


async def slow(request, context):
    await started("Slow", context)
    ms = float(request.decode() or 0)
    await asyncio.sleep(ms / 1000)
    return prefixed("slept %s" % request.decode()).encode()


async def deadline(request, context):
    await started("Deadline", context)
    left = context.time_remaining()
    return ("none" if left is None else "%.3f" % left).encode()


def read_string_field1(data):
    """The string in protobuf field 1 (wire type 2) of `data`, "" when absent."""
    i = 0
    while i < len(data):
        key, i = varint(data, i)
        wire = key & 7
        if wire == 0:
            _, i = varint(data, i)
        elif wire == 2:
            n, i = varint(data, i)
            if key >> 3 == 1:
                return data[i:i + n].decode()
            i += n
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            break
    return ""


def varint(data, i):
    shift = value = 0
    while True:
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


async def health_check(request, context):
    CALLS["Check"] = CALLS.get("Check", 0) + 1
    service = read_string_field1(request)
    if service not in HEALTH:
        await context.abort(grpc.StatusCode.NOT_FOUND, "unknown service " + service)
    return bytes([0x08, HEALTH[service]])


def control(line):
    global DELAY_MS
    words = line.split()
    if not words:
        return
    if words[0] == "health":
        HEALTH[words[2] if len(words) > 2 else ""] = 1 if words[1] == "SERVING" else 2
    elif words[0] == "delay":
        DELAY_MS = float(words[1])
    elif words[0] == "stats":
        out("stats " + json.dumps(CALLS))
    out("ack " + line)


def read_stdin(loop):
    for line in sys.stdin:
        loop.call_soon_threadsafe(control, line.strip())


async def serve(args):
    global NAME, DELAY_MS
    NAME = args.name
    DELAY_MS = args.delay_ms
    h = grpc
    handlers = [
        h.method_handlers_generic_handler("t.Test", {
            "Unary": h.unary_unary_rpc_method_handler(reporting("Unary", unary)),
            "Fail": h.unary_unary_rpc_method_handler(reporting("Fail", fail)),
            "Many": h.unary_stream_rpc_method_handler(reporting("Many", many)),
            "Sum": h.stream_unary_rpc_method_handler(reporting("Sum", sum_)),
            "Echo": h.stream_stream_rpc_method_handler(reporting("Echo", echo)),
            "Hang": h.unary_unary_rpc_method_handler(reporting("Hang", hang)),
            "Slow": h.unary_unary_rpc_method_handler(reporting("Slow", slow)),
            "Deadline": h.unary_unary_rpc_method_handler(reporting("Deadline", deadline)),
        }),
        h.method_handlers_generic_handler("grpc.health.v1.Health", {
            "Check": h.unary_unary_rpc_method_handler(health_check),
        }),
    ]
    options = [("grpc.so_reuseport", 0)] + parse_options(args.option)
    server = grpc.aio.server(handlers=handlers, options=options)
    address = "127.0.0.1:%d" % args.port
    if args.tls:
        with open(args.tls[0], "rb") as c, open(args.tls[1], "rb") as k:
            creds = grpc.ssl_server_credentials([(k.read(), c.read())])
        port = server.add_secure_port(address, creds)
    else:
        port = server.add_insecure_port(address)
    await server.start()
    threading.Thread(target=read_stdin, args=(asyncio.get_running_loop(),), daemon=True).start()
    out("listening %d" % port)
    await server.wait_for_termination()


def parse_options(pairs):
    options = []
    for pair in pairs or []:
        key, _, value = pair.partition("=")
        options.append((key, int(value) if value.lstrip("-").isdigit() else value))
    return options


class Tally:
    """What a client run saw: calls, status codes, messages, answering servers."""

    def __init__(self):
        self.calls = 0
        self.codes = {}
        self.details = {}
        self.messages = 0
        self.names = {}
        self.errors = 0
        self.first = None
        self.last = None

    def status(self, code, details=""):
        self.calls += 1
        self.codes[code] = self.codes.get(code, 0) + 1
        if code != "OK" and code not in self.details:
            self.details[code] = details

    def message(self, data):
        self.messages += 1
        text = data.decode(errors="replace")
        if self.first is None:
            self.first = text
        self.last = text
        if ": " in text:
            name = text.split(": ", 1)[0]
            self.names[name] = self.names.get(name, 0) + 1


async def one_call(tally, fn, args):
    try:
        await fn(args)
        tally.status("OK")
    except grpc.aio.AioRpcError as e:
        tally.status(e.code().name, e.details() or "")
    except asyncio.CancelledError:
        tally.status("CANCELLED", "cancelled by the client")


def channel(args):
    # each channel its own connection (grpcio shares one between like channels by default)
    options = [("grpc.enable_http_proxy", 0), ("grpc.use_local_subchannel_pool", 1)]
    if args.keepalive_ms:
        options += [
            ("grpc.keepalive_time_ms", args.keepalive_ms),
            ("grpc.keepalive_timeout_ms", 20000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
        ]
    if args.authority:
        options.append(("grpc.ssl_target_name_override", args.authority))
    options += parse_options(args.option)
    if args.tls:
        with open(args.tls, "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        return grpc.aio.secure_channel(args.target, creds, options=options)
    return grpc.aio.insecure_channel(args.target, options=options)


async def run_client(args):
    tally = Tally()
    t0 = time.monotonic()
    channels = [channel(args) for _ in range(args.channels)]
    timeout = args.deadline if args.deadline > 0 else None
    default_request = {"unary": "x", "stream": "n=%d size=%d every_ms=%s"
                       % (args.messages, args.size, args.every_ms),
                       "sum": "", "bidi": "", "hang": "x", "slow": "0", "deadline": ""}
    request = (args.request if args.request is not None
               else default_request.get(args.mode, "")).encode()

    def maybe_cancel(call):
        if args.cancel_after_ms > 0:
            asyncio.get_running_loop().call_later(args.cancel_after_ms / 1000, call.cancel)
        return call

    def path(default):
        return args.method or default

    async def unary_like(ch, default_path):
        call = maybe_cancel(ch.unary_unary(path(default_path))(request, timeout=timeout))
        tally.message(await call)

    async def stream(ch):
        call = maybe_cancel(ch.unary_stream(path("/t.Test/Many"))(request, timeout=timeout))
        i = 0
        async for m in call:
            if not m.startswith(b"message %d" % i):
                raise RuntimeError("message %d out of order: %r" % (i, m[:40]))
            i += 1
            tally.message(m)
            if i == args.cancel_after_messages:
                call.cancel()

    async def sum_call(ch):
        def numbers():
            for i in range(1, args.messages + 1):
                yield str(i).encode()
        call = maybe_cancel(ch.stream_unary(path("/t.Test/Sum"))(numbers(), timeout=timeout))
        tally.message(await call)

    async def bidi(ch):
        call = maybe_cancel(ch.stream_stream(path("/t.Test/Echo"))(timeout=timeout))
        for i in range(args.messages):
            if i and args.pause_ms > 0:  # an idle stream between two round trips
                await asyncio.sleep(args.pause_ms / 1000)
            sent = b"ping %d" % i
            try:
                await call.write(sent)
            except asyncio.InvalidStateError:  # the call ended meanwhile: its status says why
                raise grpc.aio.AioRpcError(await call.code(), None, None,
                                           details=await call.details())
            got = await call.read()
            if got != sent:
                raise RuntimeError("round trip %d: sent %r, got %r" % (i, sent, got))
            tally.message(got)
        await call.done_writing()
        if await call.read() is not grpc.aio.EOF:
            raise RuntimeError("a message after the last round trip")
        code = await call.code()
        if code != grpc.StatusCode.OK:
            raise grpc.aio.AioRpcError(code, None, None, details=await call.details())

    async def health(ch):
        svc = (args.request or "").encode()
        req = (bytes([0x0A, len(svc)]) + svc) if svc else b""
        call = ch.unary_unary(path("/grpc.health.v1.Health/Check"))(req, timeout=timeout)
        got = await call
        tally.message({b"\x08\x01": b"SERVING", b"\x08\x02": b"NOT_SERVING"}.get(got, got))

    modes = {
        "unary": lambda ch: unary_like(ch, "/t.Test/Unary"),
        "hang": lambda ch: unary_like(ch, "/t.Test/Hang"),
        "slow": lambda ch: unary_like(ch, "/t.Test/Slow"),
        "deadline": lambda ch: unary_like(ch, "/t.Test/Deadline"),
        "stream": stream,
        "sum": sum_call,
        "bidi": bidi,
        "health": health,
    }
    fn = modes[args.mode]
    counter = iter(range(args.calls))

    async def worker(ch):
        for _ in counter:
            try:
                await one_call(tally, fn, ch)
            except RuntimeError as e:  # a wrong message: counted, never silent
                tally.errors += 1
                tally.status("WRONG_MESSAGE", str(e))

    await asyncio.gather(*[worker(ch) for ch in channels for _ in range(args.concurrency)])
    for ch in channels:
        await ch.close()
    summary = {
        "mode": args.mode,
        "calls": tally.calls,
        "ok": tally.codes.get("OK", 0),
        "codes": tally.codes,
        "details": tally.details,
        "messages": tally.messages,
        "names": tally.names,
        "first": tally.first,
        "last": tally.last,
        "seconds": round(time.monotonic() - t0, 3),
    }
    out(json.dumps(summary))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="role", required=True)
    s = sub.add_parser("server")
    s.add_argument("--name", default="")
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--delay-ms", type=float, default=0)
    s.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    s.add_argument("--option", action="append", help="grpc channel arg KEY=VALUE")
    c = sub.add_parser("client")
    c.add_argument("--target", required=True)
    c.add_argument("--mode", default="unary",
                   choices=["unary", "stream", "sum", "bidi", "hang", "slow", "deadline", "health"])
    c.add_argument("--calls", type=int, default=1, help="calls in all")
    c.add_argument("--channels", type=int, default=1)
    c.add_argument("--concurrency", type=int, default=1, help="calls in flight per channel")
    c.add_argument("--messages", type=int, default=100,
                   help="stream: messages asked for; sum: numbers sent; bidi: round trips")
    c.add_argument("--size", type=int, default=0, help="stream: bytes per message")
    c.add_argument("--every-ms", default="0", help="stream: milliseconds between messages")
    c.add_argument("--request", help="the request message (health: the service name)")
    c.add_argument("--method", help="call this path instead of the mode's")
    c.add_argument("--deadline", type=float, default=0, help="seconds per call; 0 = none")
    c.add_argument("--cancel-after-ms", type=float, default=0)
    c.add_argument("--cancel-after-messages", type=int, default=0,
                   help="stream: cancel each call once it received this many messages")
    c.add_argument("--keepalive-ms", type=int, default=0)
    c.add_argument("--pause-ms", type=float, default=0, help="bidi: idle ms between round trips")
    c.add_argument("--tls", metavar="CA", help="TLS, trusting this CA file")
    c.add_argument("--authority", help="TLS server name to verify")
    c.add_argument("--option", action="append", help="grpc channel arg KEY=VALUE")
    args = p.parse_args()
    if args.role == "server":
        asyncio.run(serve(args))
    else:
        asyncio.run(run_client(args))


if __name__ == "__main__":
    main()
