#!/usr/bin/env python3
"""Helpers for scripts/apache-diff. Loopback only, standard library only.

  kit.py ports N               print N free 127.0.0.1 ports (bound together, then released)
  kit.py record LOG            recording backend on 127.0.0.1:0; prints "listening on 127.0.0.1:PORT";
                               answers "200 ok" to every request and appends one line per request
                               to LOG: the request line and the Host header, bytes escaped.
                               Every complete request head found on a connection is recorded,
                               so a request smuggled behind another one shows up as its own line.
  kit.py send PORT LOG REQS [DEADLINE]
                               sends each request of REQS (one per line, see parse_req) to
                               127.0.0.1:PORT on a new connection and prints, per request, one
                               line: status TAB location TAB backend lines seen in LOG (" ;; ");
                               requests not started by DEADLINE (epoch seconds) print "skipped"
"""
import os
import socket
import sys
import threading
import time

TIMEOUT = 2.0  # per request, client side
SETTLE = 0.08  # wait after a response for late backend lines (a smuggled second request)


def esc(b: bytes) -> str:
    """Printable ASCII kept, everything else (CR, LF, controls, non-ASCII) as \\xNN."""
    out = []
    for c in b:
        if 0x21 <= c <= 0x7E or c == 0x20:
            out.append(chr(c) if c != 0x5C else "\\\\")
        else:
            out.append("\\x%02X" % c)
    return "".join(out)


# ---------------------------------------------------------------- recorder
def serve_conn(conn: socket.socket, log, lock: threading.Lock) -> None:
    conn.settimeout(5.0)
    buf = b""
    try:
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                data = conn.recv(65536)
                if not data:
                    break
                buf += data
                continue
            head, buf = buf[:end], buf[end + 4:]
            lines = head.split(b"\r\n")
            host = b"-"
            length = 0
            for h in lines[1:]:
                name, _, value = h.partition(b":")
                if name.strip().lower() == b"host":
                    host = value.strip()
                elif name.strip().lower() == b"content-length":
                    try:
                        length = int(value.strip())
                    except ValueError:
                        length = 0
            with lock:
                log.write("%s [host %s]\n" % (esc(lines[0]), esc(host)))
                log.flush()
            while len(buf) < length:  # discard a body
                data = conn.recv(65536)
                if not data:
                    break
                buf += data
            buf = buf[length:]
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")
    except OSError:
        pass
    finally:
        conn.close()


def record(path: str) -> None:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(128)
    log = open(path, "a", encoding="ascii")
    lock = threading.Lock()
    print("listening on 127.0.0.1:%d" % srv.getsockname()[1], flush=True)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve_conn, args=(conn, log, lock), daemon=True).start()


# ---------------------------------------------------------------- client
def parse_req(line: str) -> bytes:
    """`METHOD TARGET [| Header: value]...` → raw bytes. TARGET is sent verbatim (no spaces
    in it; write %20). `Host: example.test` is added unless a Host header is given."""
    parts = [p.strip() for p in line.split(" | ")]
    method, target = parts[0].split(" ", 1)
    headers = parts[1:]
    if not any(h.lower().startswith("host:") for h in headers):
        headers.insert(0, "Host: example.test")
    text = "%s %s HTTP/1.1\r\n" % (method, target) + "".join(h + "\r\n" for h in headers) + "\r\n"
    return text.encode("latin-1")


def exchange(port: int, raw: bytes) -> tuple:
    """→ (status, location). status is the status code, or timeout/closed/refused."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    except OSError:
        return "refused", "-"
    deadline = time.monotonic() + TIMEOUT
    buf = b""
    try:
        s.sendall(raw)
        while b"\r\n\r\n" not in buf:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            data = s.recv(65536)
            if not data:
                break
            buf += data
    except socket.timeout:
        s.close()
        return "timeout", "-"
    except OSError:
        pass
    if b"\r\n\r\n" not in buf:
        s.close()
        return ("closed" if not buf else "garbled"), "-"
    head, body = buf.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    status_parts = lines[0].split(b" ", 2)
    status = esc(status_parts[1]) if len(status_parts) > 1 else esc(lines[0])
    location, length = "-", 0
    for h in lines[1:]:
        name, _, value = h.partition(b":")
        if name.strip().lower() == b"location":
            location = esc(value.strip())
        elif name.strip().lower() == b"content-length":
            try:
                length = int(value.strip())
            except ValueError:
                pass
    try:  # drain the body so the proxy finishes its side cleanly
        while len(body) < length and time.monotonic() < deadline:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            data = s.recv(65536)
            if not data:
                break
            body += data
    except OSError:
        pass
    s.close()
    return status, location


def send(port: int, log_path: str, reqs_path: str, deadline: float) -> None:
    with open(reqs_path, encoding="latin-1") as f:  # bytes as written, UTF-8 stays UTF-8
        reqs = [l.rstrip("\n") for l in f if l.strip()]
    for line in reqs:
        if time.time() > deadline:
            print("skipped\t-\t-", flush=True)
            continue
        before = os.path.getsize(log_path)
        status, location = exchange(port, parse_req(line))
        time.sleep(SETTLE)
        with open(log_path, "rb") as f:
            f.seek(before)
            seen = [l.decode("ascii").rstrip("\n") for l in f.read().splitlines()]
        print("%s\t%s\t%s" % (status, location, " ;; ".join(seen) if seen else "-"), flush=True)


def ports(n: int) -> None:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    print(" ".join(str(s.getsockname()[1]) for s in socks))
    for s in socks:
        s.close()


def main() -> None:
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "ports":
        ports(int(sys.argv[2]))
    elif cmd == "record":
        record(sys.argv[2])
    elif cmd == "send":
        send(int(sys.argv[2]), sys.argv[3], sys.argv[4], float(sys.argv[5]) if len(sys.argv) > 5 else float("inf"))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
