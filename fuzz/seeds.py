#!/usr/bin/env python3
"""Writes seed inputs for the fuzz targets from the repository's own tests.

    python3 fuzz/seeds.py OUT_DIR

OUT_DIR/<target>/ receives one file per seed. The seeds are the byte strings the unit
and integration tests already use (request and response heads, chunked bodies,
rewrite rules with requests, sidecar.toml texts, Apache configs), shaped into each
target's input format (see src/fuzzing/*.rs). They are raw material: run
`cargo +nightly fuzz cmin TARGET OUT_DIR/TARGET` and commit what is left under
fuzz/corpus/TARGET/, after

    python3 fuzz/seeds.py --scrub fuzz/corpus fuzz/regressions

which rewrites the few inputs that would trip tests/it/docs.rs (it forbids, in every
file of the repository, mentions of documents outside it).
"""

import hashlib
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
METHODS = ("GET ", "POST ", "PUT ", "HEAD ", "OPTIONS ", "DELETE ", "CONNECT ", "get ", "G ET", "PATCH ")

# A Rust string literal: optional b prefix, normal or raw (r#"..."#).
LITERAL = re.compile(r'b?r(#*)"(.*?)"\1|b?"((?:[^"\\]|\\.)*)"', re.S)


def unescape(body):
    """Rust escapes → bytes (the subset the tests use)."""
    out = bytearray()
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out += c.encode()
            i += 1
            continue
        n = body[i + 1]
        if n == "\n":  # line continuation: skip the newline and leading whitespace
            i += 2
            while i < len(body) and body[i] in " \t":
                i += 1
            continue
        simple = {"n": b"\n", "r": b"\r", "t": b"\t", "0": b"\0", "\\": b"\\", '"': b'"', "'": b"'"}
        if n in simple:
            out += simple[n]
            i += 2
        elif n == "x":
            out.append(int(body[i + 2 : i + 4], 16))
            i += 4
        elif n == "u":
            end = body.index("}", i)
            out += chr(int(body[i + 3 : end], 16)).encode()
            i = end + 1
        else:
            out += b"\\" + n.encode()
            i += 2
    return bytes(out)


def literals(path):
    text = path.read_text()
    for m in LITERAL.finditer(text):
        if m.group(2) is not None:
            yield m.group(2).encode()
        else:
            yield unescape(m.group(3))


def rust_sources(*globs):
    for g in globs:
        yield from sorted(ROOT.glob(g))


class Seeds:
    def __init__(self, out):
        self.out = pathlib.Path(out)
        self.count = {}

    def add(self, target, data):
        d = self.out / target
        d.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha1(data).hexdigest()
        (d / name).write_bytes(data)
        self.count[target] = self.count.get(target, 0) + 1


def request_heads():
    heads = set()
    for path in rust_sources("src/h1/*.rs", "src/proxy/*.rs", "tests/*.rs", "tests/support/*.rs"):
        text = path.read_text()
        for lit in literals(path):
            if lit.startswith(tuple(m.encode() for m in METHODS)) and b"HTTP/" in lit:
                heads.add(lit)
        # tests/smuggling.rs: post_with("headers", "body")
        for m in re.finditer(r'post_with\(\s*"((?:[^"\\]|\\.)*)",\s*"((?:[^"\\]|\\.)*)"', text, re.S):
            heads.add(b"POST / HTTP/1.1\r\nHost: a\r\n" + unescape(m.group(1)) + b"\r\n" + unescape(m.group(2)))
    return heads


def response_heads():
    heads = set()
    for path in rust_sources("src/h1/*.rs", "src/proxy/*.rs", "tests/*.rs", "tests/support/*.rs"):
        for lit in literals(path):
            if lit.startswith(b"HTTP/"):
                heads.add(lit)
    return heads


def chunked_bodies(requests):
    bodies = set()
    for path in rust_sources("src/h1/chunked.rs", "tests/smuggling.rs", "tests/http.rs"):
        for lit in literals(path):
            if re.match(rb"^[0-9a-fA-F ;+\-x_Z]*\r?\n?", lit) and (b"\r\n" in lit or b"\n" in lit) and not lit.startswith(
                tuple(m.encode() for m in METHODS)
            ):
                bodies.add(lit)
    for r in requests:
        if b"\r\n\r\n" in r:
            body = r.split(b"\r\n\r\n", 1)[1]
            if body:
                bodies.add(body)
    return bodies


def apache_cases():
    """scripts/apache-diff.d/cases → [(rule lines, [request heads])]."""
    cases = []
    lines, reqs = None, None
    for raw in (ROOT / "scripts/apache-diff.d/cases").read_text().splitlines():
        if raw.startswith("@case"):
            if lines is not None:
                cases.append((lines, reqs))
            lines, reqs = [], []
        elif lines is None or raw.startswith("#") or raw.startswith("@design") or not raw.strip():
            continue
        elif raw.startswith("@req"):
            parts = [p.strip() for p in raw[4:].split("|")]
            headers = parts[1:]
            if not any(h.lower().startswith("host:") for h in headers):
                headers.insert(0, "Host: example.test")
            reqs.append((parts[0] + " HTTP/1.1\r\n" + "".join(h + "\r\n" for h in headers) + "\r\n").encode())
        else:
            lines.append(raw.replace("@B@", "127.0.0.1:8080"))
    if lines is not None:
        cases.append((lines, reqs))
    return cases


def rewrite_seeds(cases):
    for lines, reqs in cases:
        rules = []
        for l in lines:
            name, _, args = l.strip().partition(" ")
            if name == "RewriteCond":
                rules.append("C " + args.strip())
            elif name == "RewriteRule":
                rules.append("R " + args.strip())
        for r in reqs[:4]:
            yield ("\n".join(rules) + "\n---\n").encode() + r
    # Requests alone run against the target's built-in hostile rules.
    for lines, reqs in cases:
        yield from reqs


def apache_configs(cases):
    for p in sorted((ROOT / "tests/fixtures").glob("*.conf")):
        yield p.read_bytes()
    for lines, _ in cases:
        body = "".join("  " + l + "\n" for l in lines)
        yield (
            "Listen 8080\n<VirtualHost *:8080>\n  ServerName example.test\n  RewriteEngine On\n"
            + body
            + "  ProxyPass / http://127.0.0.1:8080/\n  ProxyPassReverse / http://127.0.0.1:8080/\n</VirtualHost>\n"
        ).encode()
    for path in rust_sources("src/apache/*.rs", "tests/cli.rs"):
        for lit in literals(path):
            if re.search(rb"^\s*(<VirtualHost|Listen|RewriteRule|ProxyPass|<Proxy)", lit, re.M):
                yield lit


def config_texts():
    yield (ROOT / "sidecar.toml").read_bytes()
    for path in rust_sources("src/config/*.rs", "src/cmd/*.rs", "tests/*.rs", "tests/support/*.rs"):
        for lit in literals(path):
            if b"[server]" in lit or b"[[proxy]]" in lit or b"[[rewrite]]" in lit:
                # format! placeholders → plausible values
                lit = re.sub(rb"\{\{", b"{", re.sub(rb"\}\}", b"}", lit))
                yield re.sub(rb"\{[a-z_.0-9:?]*\}", b"127.0.0.1:8080", lit)


def scrub(dirs):
    """The phrases tests/it/docs.rs looks for, defused (lower case, `_` for the space)."""
    # Built from pieces, as tests/it/docs.rs does, so that this file does not match itself.
    pieces = [("..", "/shared"), ("SPEC", ".md"), ("SPEC", " §"), ("STYLE", ".md"), ("STYLE", " §")]
    pieces += [("SECURITY", ".md"), ("closing", " note")]
    words = [(a + b).encode() for a, b in pieces]
    changed = 0
    for d in dirs:
        for path in sorted(pathlib.Path(d).rglob("*")):
            if not path.is_file():
                continue
            data = old = path.read_bytes()
            for w in words:
                data = data.replace(w, w.lower().replace(b" ", b"_"))
            data = re.sub(rb"(?i)(issue) ([0-9#])", rb"\1_\2", data)
            if data != old:
                path.write_bytes(data)
                changed += 1
    print(f"{changed} files rewritten")


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--scrub":
        return scrub(sys.argv[2:])
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    s = Seeds(sys.argv[1])
    requests = request_heads()
    for r in requests:
        s.add("request_head", r)
        if b"websocket" in r.lower():
            s.add("websocket_upgrade", r)
    key = b"dGhlIHNhbXBsZSBub25jZQ=="
    handshake = b"GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\n\r\n"
    for i, r in enumerate(sorted(response_heads())):
        s.add("response_head", bytes([i % 64]) + r)
        s.add("websocket_upgrade", handshake + r)
    for i, b in enumerate(sorted(chunked_bodies(requests))):
        s.add("chunked", bytes([i % 16]) + b)
    cases = apache_cases()
    for seed in rewrite_seeds(cases):
        s.add("rewrite", seed)
    for conf in apache_configs(cases):
        s.add("import_apache", conf)
    for text in config_texts():
        s.add("config", text)
    for target, n in sorted(s.count.items()):
        print(f"{target}: {n} seeds")


if __name__ == "__main__":
    main()
