#!/usr/bin/env python3
"""Load test of `styleclip serve`: concurrent clients, mixed requests, bounded in count and time.

Starts `styleclip serve` on a free loopback port and sends REQUESTS requests from CLIENTS threads
(each its own keep-alive connection): global previews (most), seeds, photo uploads, edit jobs of
every engine, reads (info, job status, downloads) and bad requests, in a fixed random order. Every
answer must have the status its kind expects (a bad request its 4xx, never a 5xx or a dropped
connection); every job must end "done"; the server must still run. The server's resident memory
is read after a warm-up and at the end.

Prints one JSON object: counts, failures, preview latency (p50/p95 ms), requests per second,
server RSS (after warm-up, end, peak). Exit 0 when nothing failed, 1 otherwise.

usage: serve_load.py STYLECLIP MODELS WORKDIR [--clients 8] [--requests 400] [--max-seconds 600]
                     [--max-rss-growth-mb MB]
"""
import argparse
import http.client
import json
import os
import random
import re
import statistics
import subprocess
import sys
import threading
import time

PROMPTS = [("a shape", "a blue shape"), ("a shape", "a red shape"), ("a circle", "a square"),
           ("a shape", "a large shape"), ("a shape on a dark background", "a shape on a white background")]


def rss_mb(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


class Client:
    def __init__(self, port):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.used = time.time()

    def request(self, method, path, body=None, content_type="application/json"):
        if time.time() - self.used > 4:
            # The server closes a connection idle for 5 s (keep-alive): open a fresh one, as a
            # browser does, instead of taking the closed socket for a failure.
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        headers = {"Content-Type": content_type} if body is not None else {}
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        if isinstance(body, str):
            # Bytes go out with the headers in one send(): a separate small send meets Nagle's
            # algorithm and the server's delayed ACK (40 ms a request, measured here).
            body = body.encode()
        self.conn.request(method, path, body=body, headers=headers)
        r = self.conn.getresponse()
        data = r.read()
        self.used = time.time()
        return r.status, data


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("styleclip")
    ap.add_argument("models")
    ap.add_argument("work")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--max-seconds", type=float, default=600)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-rss-growth-mb", type=float, default=None,
                    help="fail when the server's RSS grows more than this after the warm-up")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    log = open(os.path.join(a.work, "serve.log"), "w")
    server = subprocess.Popen([a.styleclip, "serve", "--models", a.models, "--port", "0",
                               "--max-jobs", "1000", "--out", os.path.join(a.work, "serve-out")],
                              stdout=subprocess.PIPE, stderr=log, text=True)
    failures = []
    try:
        line = server.stdout.readline()
        m = re.match(r"listening on http://127.0.0.1:(\d+)/", line)
        if not m:
            print(json.dumps({"error": f"serve did not start: {line!r}"}))
            return 1
        port = int(m.group(1))
        setup = Client(port)
        info = json.loads(setup.request("GET", "/api/info")[1])
        latents = [json.loads(setup.request("POST", "/api/latents", {"seed": s})[1]) for s in range(4)]
        photo = setup.request("GET", latents[0]["image"])[1]  # an aligned 'photo' to upload
        mapper = info["mappers"][0] if info["mappers"] else None

        rng = random.Random(a.seed)
        kinds = (["preview"] * 55 + ["seed"] * 8 + ["upload"] * 4 + ["job"] * 10 + ["read"] * 13 +
                 ["bad"] * 10)
        plan = [rng.choice(kinds) for _ in range(a.requests)]
        lock = threading.Lock()
        next_index = [0]
        done_at = {}
        preview_ms, compute_ms, job_ids, counts = [], [], [], {}
        deadline = time.time() + a.max_seconds

        def one(client, kind, r):
            """Sends one request of `kind`; returns (status, expected statuses, body)."""
            latent = r.choice(latents)["id"]
            if kind == "preview":
                neutral, target = r.choice(PROMPTS)
                body = {"latent": latent, "neutral": neutral, "target": target,
                        "strength": round(r.uniform(-8, 8), 1),
                        "threshold": r.choice([0.1, 0.15, 0.2, "auto"])}
                t0 = time.perf_counter()
                st, data = client.request("POST", "/api/preview", body)
                with lock:
                    preview_ms.append((time.perf_counter() - t0) * 1000)
                    if st == 200:
                        compute_ms.append(json.loads(data)["milliseconds"])
                return st, {200}, data
            if kind == "seed":
                return expect(client, {201}, "POST", "/api/latents", {"seed": r.randrange(1000)})
            if kind == "upload":
                st, data = client.request("POST", "/api/photos?aligned=true&steps=10", photo, "image/png")
                if st == 202:
                    with lock:
                        job_ids.append(json.loads(data)["id"])
                return st, {202}, data
            if kind == "job":
                choice = r.choice(["optimize", "global", "mapper"] if mapper else ["optimize", "global"])
                body = {"latent": latent, "method": choice}
                if choice == "optimize":
                    body.update(text=r.choice(PROMPTS)[1], options={"steps": 5})
                elif choice == "global":
                    neutral, target = r.choice(PROMPTS)
                    body.update(text=target, options={"neutral": neutral, "strength": 3})
                else:
                    body.update(options={"mapper": mapper})
                st, data = client.request("POST", "/api/jobs", body)
                if st == 202:
                    with lock:
                        job_ids.append(json.loads(data)["id"])
                return st, {202}, data
            if kind == "read":
                with lock:
                    ids = list(job_ids)
                what = r.choice(["info", "jobs", "job", "image", "latent"])
                if what == "job" and ids:
                    return expect(client, {200}, "GET", "/api/jobs/" + r.choice(ids))
                if what == "image":
                    return expect(client, {200}, "GET", f"/api/latents/{latent}/image.png")
                if what == "latent":
                    return expect(client, {200}, "GET", f"/api/latents/{latent}/latent.pt")
                return expect(client, {200}, "GET", "/api/info" if what == "info" else "/api/jobs")
            # Bad requests: each must be refused with its status, the server unharmed.
            bad = r.choice([  # method, path, body, expected statuses[, content type]
                ("POST", "/api/preview", "{not json", {400}),
                ("POST", "/api/preview", {"latent": "000000000000", "neutral": "a", "target": "b"}, {404}),
                ("POST", "/api/preview", {"latent": latent, "neutral": "a", "target": "b", "threshold": 7}, {400}),
                ("POST", "/api/jobs", {"latent": latent, "method": "optimize", "text": "x",
                                       "options": {"steps": "lots"}}, {400}),
                ("POST", "/api/jobs", {"latent": latent, "method": "mapper", "options": {"mapper": "../x"}}, {400}),
                ("GET", "/api/jobs/ffffffffffff", None, {404}),
                ("GET", "/api/nowhere", None, {404}),
                ("POST", "/api/photos?aligned=true", "not a picture", {422}, "image/png"),
                ("POST", "/api/latents", "seed=3", {415}, "application/x-www-form-urlencoded"),
            ])
            method, path, body, expected, *content_type = bad
            return expect(client, expected, method, path, body, *content_type)

        def expect(client, expected, method, path, body=None, content_type="application/json"):
            st, data = client.request(method, path, body, content_type)
            return st, expected, data

        def worker():
            client = Client(port)
            r = random.Random()
            while True:
                with lock:
                    i = next_index[0]
                    if i >= len(plan) or time.time() > deadline:
                        return
                    next_index[0] += 1
                r.seed(a.seed * 100003 + i)
                kind = plan[i]
                try:
                    st, expected, data = one(client, kind, r)
                except Exception as e:  # a dropped connection or a timeout is a failure
                    with lock:
                        failures.append({"request": i, "kind": kind, "error": repr(e)})
                    client = Client(port)
                    continue
                with lock:
                    counts[kind] = counts.get(kind, 0) + 1
                    done_at[i] = time.time()
                    if st not in expected:
                        failures.append({"request": i, "kind": kind, "status": st,
                                         "body": data[:200].decode(errors="replace")})
                if i == len(plan) // 8:
                    with lock:
                        warm["rss"] = rss_mb(server.pid)
                if i % (len(plan) // 8) == 0:
                    with lock:
                        rss_series.append(round(rss_mb(server.pid), 1))

        # The reference in the same run: one client alone, previews one after another (every
        # direction cached first, as during a slider's drag).
        for neutral, target in PROMPTS:
            setup.request("POST", "/api/preview", {"latent": latents[0]["id"], "neutral": neutral,
                                                   "target": target})
        alone = []
        for k in range(40):
            neutral, target = PROMPTS[k % len(PROMPTS)]
            body = {"latent": latents[k % 4]["id"], "neutral": neutral, "target": target,
                    "strength": -8 + 0.4 * k}
            t1 = time.perf_counter()
            st, _ = setup.request("POST", "/api/preview", body)
            alone.append((time.perf_counter() - t1) * 1000)
            if st != 200:
                failures.append({"kind": "preview alone", "status": st})
        warm = {}
        rss_series = []
        t0 = time.time()
        threads = [threading.Thread(target=worker) for _ in range(a.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.time() - t0
        sent = sum(counts.values()) + len([f for f in failures if "error" in f])
        if sent < len(plan):
            failures.append({"error": f"only {sent} of {len(plan)} requests in {a.max_seconds} s"})
        # Every job ends, and ends done.
        states = {}
        for jid in job_ids:
            while True:
                st, data = setup.request("GET", "/api/jobs/" + jid)
                j = json.loads(data)
                if j["state"] not in ("queued", "running") or time.time() > deadline:
                    break
                time.sleep(0.1)
            states[j["state"]] = states.get(j["state"], 0) + 1
            if j["state"] != "done":
                failures.append({"job": jid, "state": j["state"], "error": j.get("error")})
        jobs_seconds = time.time() - t0
        rss_end = rss_mb(server.pid)
        peak = rss_mb(server.pid, "VmHWM")
        alive = server.poll() is None
        if not alive:
            failures.append({"error": f"the server exited with {server.returncode}"})
        growth = rss_end - warm.get("rss", rss_end)
        if a.max_rss_growth_mb is not None and growth > a.max_rss_growth_mb:
            failures.append({"error": f"server memory grew {growth:.0f} MB after the warm-up "
                                      f"(allowed {a.max_rss_growth_mb:.0f})"})
        preview_ms.sort()
        q = statistics.quantiles(preview_ms, n=20) if len(preview_ms) >= 20 else [float("nan")] * 19
        result = {
            "clients": a.clients, "requests": len(plan), "counts": counts, "job_states": states,
            "failures": failures[:20], "failed": len(failures),
            "seconds": round(seconds, 2), "requests_per_second": round(len(plan) / seconds, 1),
            "all_jobs_done_seconds": round(jobs_seconds, 2),
            "preview_ms": {"count": len(preview_ms), "p50": round(statistics.median(preview_ms), 1),
                           "p95": round(q[18], 1), "max": round(preview_ms[-1], 1),
                           "server_compute_p50": round(statistics.median(compute_ms), 1),
                           "one_client_alone_p50": round(statistics.median(alone), 1),
                           "one_client_alone_p95": round(statistics.quantiles(alone, n=20)[18], 1)},
            "server_rss_mb": {"every_eighth": rss_series,
                              "after_warmup": round(warm.get("rss", float("nan")), 1),
                              "end": round(rss_end, 1), "peak": round(peak, 1)},
            "device": info["device"], "models": info["models"]["name"],
        }
        print(json.dumps(result, indent=1))
        return 0 if not failures else 1
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    sys.exit(main())
