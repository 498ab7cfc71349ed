"""Connect/close churn against a netchat TCP server, for tests/stress_scenarios.ts.

Usage: python3 churn_peer.py PORT CYCLES [THREADS [KIND,KIND...]]

Each cycle connects and ends the connection one of five ways, in turn:
graceful (read the welcome, close: FIN), abort (SO_LINGER 0: RST),
abort at once (RST before the welcome is read), half-close (shutdown(SHUT_WR),
read to the server's FIN, close), and close with unread data (Linux answers
the server's data with RST). Every 50th cycle also keeps a connection open,
idle and half-open from the server's view, until the end, when all of those
are aborted with RST. Prints one line of counts as JSON; exits 1 if a
connection could not be made.
"""

import json
import socket
import struct
import sys
import threading

LINGER_ZERO = struct.pack("ii", 1, 0)
KINDS = ["graceful", "abort", "abort_at_once", "half_close", "unread_close"]


def abort(sock):
    # SO_LINGER (on, 0 s): close() drops the connection with RST instead of FIN.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_ZERO)
    sock.close()


def cycle(port, kind, held):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    if kind == "graceful":
        sock.recv(1024)
        sock.close()
    elif kind == "abort":
        sock.recv(1024)
        abort(sock)
    elif kind == "abort_at_once":
        abort(sock)
    elif kind == "half_close":
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(4096):
            pass
        sock.close()
    elif kind == "unread_close":
        sock.sendall(b"hello from a peer that will not read\n")
        sock.close()
    if held is not None:
        idle = socket.create_connection(("127.0.0.1", port), timeout=10)
        held.append(idle)


def worker(port, kinds, first, count, step, counts, held, errors):
    # Each thread counts in its own dict; they are summed at the end.
    try:
        for i in range(first, first + count * step, step):
            kind = kinds[i % len(kinds)]
            cycle(port, kind, held if i % 50 == 49 else None)
            counts[kind] = counts.get(kind, 0) + 1
    except OSError as error:
        errors.append(f"cycle failed: {error}")


def main():
    port, cycles = int(sys.argv[1]), int(sys.argv[2])
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    kinds = sys.argv[4].split(",") if len(sys.argv) > 4 else KINDS
    unknown = set(kinds) - set(KINDS)
    if unknown:
        sys.exit(f"churn_peer.py: unknown kind {sorted(unknown)[0]!r}: use {','.join(KINDS)}")
    per_thread, held, errors = [{} for _ in range(threads)], [], []
    workers = [
        threading.Thread(
            target=worker,
            args=(port, kinds, t, len(range(t, cycles, threads)), threads, per_thread[t], held, errors),
        )
        for t in range(threads)
    ]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    for sock in held:
        abort(sock)
    counts = {kind: sum(c.get(kind, 0) for c in per_thread) for kind in KINDS}
    counts["held_then_aborted"] = len(held)
    counts["cycles"] = sum(counts.get(kind, 0) for kind in KINDS)
    print(json.dumps({"counts": counts, "errors": errors}))
    sys.exit(1 if errors else 0)


main()
