"""Keep-alive HTTP/1.1 clients, one per source address, taking turns: round r
sends GET /r on each client's one connection in order, and prints one line per
response: "<source>:<its port> <body>". Usage: PORT ROUNDS HOST SOURCE..."""
import http.client
import sys

port, rounds, host = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
conns = []
for source in sys.argv[4:]:
    c = http.client.HTTPConnection(host, port, timeout=10, source_address=(source, 0))
    c.connect()
    conns.append((source, c))
for r in range(rounds):
    for source, c in conns:
        c.request("GET", f"/{r}", headers={"Host": "app.test"})
        res = c.getresponse()
        body = res.read().decode().strip()
        print(f"{source}:{c.sock.getsockname()[1]} {res.status} {body}", flush=True)
for _, c in conns:
    c.close()
