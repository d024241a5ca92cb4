#!/usr/bin/env python3
"""Helper for scripts/bench-token.sh (standard library only).

  creds.py create ADDR COUNT KIND [PARALLEL]  -- PUT COUNT credentials named bench-00000..,
                                                 KIND = static | jwt, over PARALLEL keep-alive
                                                 connections; prints "created N in S s"
  creds.py wait ADDR COUNT [TIMEOUT_S]        -- poll GET /v1/credentials until COUNT of them
                                                 have a non-null "version"
  creds.py token ADDR NAME [TIMEOUT_S]        -- poll GET /v1/credentials/NAME/token until 200,
                                                 print the token string
"""
import http.client
import json
import os
import sys
import threading
import time
import urllib.parse


def headers(extra=None):
    """The root token of the server (BATON_TOKEN), and `extra`."""
    h = {"authorization": "Bearer " + os.environ["BATON_TOKEN"]}
    h.update(extra or {})
    return h


def conn_for(addr):
    u = urllib.parse.urlsplit(addr)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=60)


def body_for(kind, i):
    if kind == "static":
        # ~token-sized opaque value
        issuer = {"kind": "static", "token": "static-%05d-" % i + "x" * 300}
    elif kind == "jwt":
        issuer = {"kind": "jwt", "algorithm": "EdDSA", "key": "generate",
                  "claims": {"iss": "bench", "sub": "cred-%05d" % i}}
    else:
        raise SystemExit("unknown kind %r" % kind)
    return json.dumps({"issuer": issuer, "policy": {"lifetime": "1h"}}).encode()


def create(addr, count, kind, parallel=8):
    errors = []
    nxt = [0]
    lock = threading.Lock()

    def worker():
        c = conn_for(addr)
        while True:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= count or errors:
                break
            body = body_for(kind, i)
            for attempt in range(3):
                try:
                    c.request("PUT", "/v1/credentials/bench-%05d" % i, body=body,
                              headers=headers({"content-type": "application/json"}))
                    r = c.getresponse()
                    data = r.read()
                    if r.status not in (200, 201):
                        errors.append("PUT bench-%05d: HTTP %d %s" % (i, r.status, data[:200]))
                    break
                except (OSError, http.client.HTTPException) as e:
                    c.close()
                    c = conn_for(addr)
                    if attempt == 2:
                        errors.append("PUT bench-%05d: %r" % (i, e))
        c.close()

    t0 = time.monotonic()
    ts = [threading.Thread(target=worker) for _ in range(parallel)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    dt = time.monotonic() - t0
    if errors:
        for e in errors[:5]:
            print(e, file=sys.stderr)
        raise SystemExit("%d errors creating credentials" % len(errors))
    print("created %d %s credentials in %.1f s (%.0f/s)" % (count, kind, dt, count / dt))


def get_json(addr, path):
    c = conn_for(addr)
    try:
        c.request("GET", path, headers=headers())
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def wait(addr, count, timeout=120.0):
    t0 = time.monotonic()
    while True:
        status, data = get_json(addr, "/v1/credentials")
        ready = total = 0
        if status == 200:
            creds = json.loads(data)["credentials"]
            total = len(creds)
            ready = sum(1 for c in creds if c.get("version") is not None)
            if ready >= count:
                print("all %d credentials have a version after %.1f s" % (ready, time.monotonic() - t0))
                return
        if time.monotonic() - t0 > timeout:
            raise SystemExit("timeout: %d/%d credentials have a version (%d listed)" % (ready, count, total))
        time.sleep(0.2)


def token(addr, name, timeout=30.0):
    t0 = time.monotonic()
    while True:
        try:
            status, data = get_json(addr, "/v1/credentials/%s/token" % name)
            if status == 200:
                print(json.loads(data)["token"])
                return
        except OSError:
            pass
        if time.monotonic() - t0 > timeout:
            raise SystemExit("timeout waiting for the token of %s" % name)
        time.sleep(0.02)


def main(argv):
    if len(argv) < 2:
        raise SystemExit(__doc__)
    cmd, args = argv[1], argv[2:]
    if cmd == "create":
        create(args[0], int(args[1]), args[2], int(args[3]) if len(args) > 3 else 8)
    elif cmd == "wait":
        wait(args[0], int(args[1]), float(args[2]) if len(args) > 2 else 120.0)
    elif cmd == "token":
        token(args[0], args[1], float(args[2]) if len(args) > 2 else 30.0)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
