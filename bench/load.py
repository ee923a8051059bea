"""Load bench (``make bench-load``): the production-shaped stack under patients and dermatologists, with 1 and
with 2 analysis workers, side by side in one invocation.

For each worker count the bench starts the stack (`deploy.harness.Stack`: gunicorn, scheduler, a Celery
``photos`` worker with that concurrency, private Redis, a PostgreSQL database of its own), seeds 10,000 open
alerts the way `bench.web_bench` does, enrols one site per patient through the API and uploads its baseline (a
real phone photo of ``../shared/data/phone``, read in place, never copied into the repository; generated photos
without it), then:

1. *one photo alone*: follow-ups of one site uploaded one at a time on an idle stack — the analysis time of
   one photo (upload to result, median of three compared with the baseline and the previous photo);
2. *below capacity* (locust, headless, loopback only): 2 patients uploading every 4 analysis times, and
   dermatologists polling the queue and opening alerts — upload-to-alert times;
3. *busy*: ``--patients`` (20) patients uploading together, at twice what 2 ideal workers can analyse, and
   ``--derms`` dermatologists — upload p95, queue page p95, photos analysed per minute per worker;

and waits until every photo is finished, then checks that each ended done or rejected (or failed: counted) and
none was analysed twice. Follow-ups are the phone recipe's (`registration.phone_synth.make_phone_pair`) renderings
of each site's baseline, some with a new lesion, growth or darkening, so that some raise alerts; they are written
once to ``bench-out/load/photos`` (git-ignored).

Prints one JSON line per worker count, then the table of figures with the load averages and the targets.
Bounded: ``--light-seconds``, ``--busy-seconds``, and a drain limit.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from deploy.harness import Api, Stack, load_averages, percentile, wait_for  # noqa: E402

SHARED_PHONE = Path(os.environ.get("SCARWATCH_SHARED", REPO.parent / "shared")) / "data" / "phone"
DERM_EMAIL, DERM_PASSWORD = "derm0@bench.test", "bench-password-long-enough"  # bench.web_bench.populate's
KINDS = ("new_lesion", "none", "growth", "none", "darkening", "none")
TARGETS = {"ratio": 1.7, "upload_p95_ms": 300, "queue_p95_ms": 100, "alert_vs_one_photo": 2.0}


# --- photos ----------------------------------------------------------------------------------------------------

def sources(n: int, seed: int) -> list[tuple[Path, Path | None]]:
    """``n`` real phone photos (long side ≥ 1,000 px) with a lesion mask, or the demo's when the shared data
    is missing."""
    import random

    manifest = SHARED_PHONE / "manifest.csv"
    if manifest.exists():
        rows = [r for r in csv.DictReader(manifest.open()) if r["mask"] and int(r["width"]) >= 1000]
        random.Random(seed).shuffle(rows)
        return [(SHARED_PHONE / r["image"], SHARED_PHONE / r["mask"]) for r in rows[:n]]
    demo = sorted((REPO / "followup" / "demo_photos").glob("PAT_*[0-9].jpg"))
    return [(p, p.with_name(p.stem + "_mask.png")) for p in demo[:n]]


def followups(source: tuple[Path, Path], count: int, out: Path, *, seed: int) -> list[str]:
    """``count`` phone re-captures of the source photo (cached in ``out``), cycling through `KINDS`."""
    import numpy as np
    from PIL import Image

    from registration.phone_synth import make_phone_pair

    paths = [out / f"{source[0].stem}_{j}.jpg" for j in range(count)]
    if all(p.exists() for p in paths):
        return [str(p) for p in paths]
    image = np.asarray(Image.open(source[0]).convert("RGB"))
    lesion = np.asarray(Image.open(source[1]).convert("L")) > 127
    rng = np.random.default_rng(seed)
    for j, path in enumerate(paths):
        pair = make_phone_pair(image, lesion_mask=lesion, kind=KINDS[j % len(KINDS)], rng=rng,
                               scale_range=(0.8, 1.25), max_tilt=20.0, rotation=25.0, card=None, background=None)
        buffer = io.BytesIO()
        Image.fromarray(pair.moving_image).save(buffer, format="JPEG", quality=90)
        path.write_bytes(buffer.getvalue())
    return [str(p) for p in paths]


# --- seeding ---------------------------------------------------------------------------------------------------

def seed_alerts(n: int) -> None:
    """10,000 open alerts in one clinic (`bench.web_bench.populate`), run in a child process with the stack's
    environment; the id sequences are moved past the inserted ids (populate inserts explicit ids)."""
    from sqlalchemy import text

    from app import create_app
    from bench.web_bench import populate
    from followup.db import db

    app = create_app({"JOB_BACKEND": "deferred", "SCHEDULER_ENABLED": False})
    with app.app_context():
        populate(n, n)
        for table in db.metadata.sorted_tables:
            if "id" in table.c and table.c.id.primary_key and str(table.c.id.type).upper().startswith("INT"):
                db.session.execute(text(
                    f"SELECT setval(pg_get_serial_sequence('\"{table.name}\"', 'id'), "
                    f"GREATEST((SELECT max(id) FROM \"{table.name}\"), 1))"))
        db.session.commit()


# --- one worker count ------------------------------------------------------------------------------------------

def run_locust(stack: Stack, plan: dict, seconds: int, out: Path, name: str) -> dict:
    plan_path = out / f"{name}-plan.json"
    plan_path.write_text(json.dumps(plan))
    prefix = out / name
    users = plan["patients"] + plan["dermatologists"]
    env = dict(stack.env, LOAD_PLAN=str(plan_path))
    command = [str(Path(sys.executable).parent / "locust"), "-f", str(REPO / "bench" / "locustfile.py"),
               "--headless", "--host", stack.url, "--users", str(users), "--spawn-rate", str(users),
               "--run-time", f"{seconds}s", "--stop-timeout", "30", "--csv", str(prefix), "--only-summary",
               "--loglevel", "WARNING"]
    with open(out / f"{name}-locust.log", "wb") as log:
        subprocess.run(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=seconds + 120)
    stats = {}
    for row in csv.DictReader(open(f"{prefix}_stats.csv")):
        stats[row["Name"]] = {"n": int(row["Request Count"]), "failures": int(row["Failure Count"]),
                              "p50_ms": _num(row["50%"]), "p95_ms": _num(row["95%"]),
                              "max_ms": _num(row["Max Response Time"])}
    return stats


def _num(value: str):
    try:
        return round(float(value))
    except ValueError:
        return None


def photo_times(stack: Stack, after_id: int) -> dict:
    rows = stack.sql("SELECT id, status, extract(epoch FROM received_at), extract(epoch FROM status_changed_at) "
                     "FROM photo WHERE id > :after AND kind = 'followup'", after=after_id)
    alerts = stack.sql("SELECT extract(epoch FROM a.created_at) - extract(epoch FROM p.received_at) FROM alert a "
                       "JOIN photo p ON p.id = a.photo_id WHERE p.id > :after", after=after_id)
    finished = [r for r in rows if r[1] in ("done", "rejected", "failed")]
    result = [float(r[3] - r[2]) for r in finished]
    figures = {"photos": len(rows), "finished": len(finished),
               "upload_to_result_p50_s": _round(statistics.median(result) if result else None),
               "upload_to_result_p95_s": _round(percentile(result, 0.95)),
               "alerts": len(alerts), "upload_to_alert_p50_s": _round(
                   statistics.median([float(a[0]) for a in alerts]) if alerts else None),
               "upload_to_alert_p95_s": _round(percentile([float(a[0]) for a in alerts], 0.95))}
    if finished:
        span = max(float(r[3]) for r in finished) - min(float(r[2]) for r in finished)
        figures["span_s"] = round(span, 1)
        figures["photos_per_minute"] = round(len(finished) / span * 60, 2) if span > 0 else None
    return figures


def _round(value, digits: int = 2):
    return None if value is None else round(value, digits)


def _max_id(stack: Stack) -> int:
    return stack.sql("SELECT coalesce(max(id), 0) FROM photo")[0][0]


def one_worker_count(workers: int, args, photos: list[tuple[tuple[Path, Path], list[str]]], out: Path) -> dict:
    threads = str(args.threads_per_worker)
    env = {"PHOTO_STALE_SECONDS": "60", "PHOTO_RESEND_SECONDS": "10", "LOG_LEVEL": "WARNING",
           "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads,
           "OPENCV_FOR_THREADS_NUM": threads, "LINK_UPLOAD_RATE_LIMIT": "1000 per hour"}
    figures: dict = {"workers": workers, "web_workers": args.web_workers, "web_threads": args.web_threads,
                     "worker_nice": args.nice}
    with Stack(out / f"logs-{workers}", database_url=args.database_url, photo_workers=workers,
               web_workers=args.web_workers, web_threads=args.web_threads, photo_nice=args.nice,
               extra_env=env) as stack:
        started = time.monotonic()
        subprocess.run([sys.executable, "-c", f"from bench.load import seed_alerts; seed_alerts({args.alerts})"],
                       cwd=REPO, env=stack.env, check=True, capture_output=True)
        figures["seeded_open_alerts"] = stack.sql("SELECT count(*) FROM alert WHERE status = 'open'")[0][0]
        seeded = _max_id(stack)
        api = Api(stack.url, DERM_EMAIL, DERM_PASSWORD)
        sites = api.enrol(args.patients, excision_date="2026-06-01", phone_base=7700800000)
        plan_sites = []
        for i, site in enumerate(sites):
            source, files = photos[i % len(photos)]
            status, _, _ = api.upload(site["id"], source[0].read_bytes(), kind="baseline")
            assert status == 202, status
            plan_sites.append({"site_id": site["id"], "followups": files})
        wait_for(lambda: stack.count(("queued", "processing")) == 0, 600, what="baselines analysed")
        figures["baselines"] = dict(stack.sql("SELECT status, count(*) FROM photo WHERE id > :seeded "
                                              "GROUP BY status", seeded=seeded))
        figures["setup_s"] = round(time.monotonic() - started, 1)

        # 1. one photo alone: four follow-ups of one site, one at a time (a new lesion, none, growth,
        # darkening); the first is compared with the baseline only, the others also with the previous photo,
        # as nearly every photo of the busy phase is: the figure is the median of those three.
        marker = _max_id(stack)
        for j in range(4):
            api.upload(sites[0]["id"], Path(plan_sites[0]["followups"][j]).read_bytes(), kind="followup")
            wait_for(lambda: stack.count(("queued", "processing")) == 0, 300, poll=0.05, what="one photo")
            if j == 0:
                marker = _max_id(stack)
        alone = photo_times(stack, marker)
        one_photo_s = alone["upload_to_result_p50_s"]
        figures["one_photo"] = {**alone, "load": load_averages()}

        base = {"token": api.token, "sites": plan_sites, "derm_email": DERM_EMAIL, "derm_password": DERM_PASSWORD}
        # 2. below capacity
        marker = _max_id(stack)
        # two patients each sending a photo every 4 analysis times: half of one worker's capacity
        light = dict(base, patients=2, dermatologists=2, pacing_seconds=max(4 * one_photo_s, 4.0))
        light["sites"] = plan_sites[1:]
        stats = run_locust(stack, light, args.light_seconds, out, f"w{workers}-light")
        wait_for(lambda: stack.count(("queued", "processing")) == 0, 300, what="light phase drained")
        figures["below_capacity"] = {"pacing_s": round(light["pacing_seconds"], 2), "requests": stats,
                                     **photo_times(stack, marker), "load": load_averages()}

        # 3. busy: offered twice what two ideal workers analyse, so that a backlog waits with either count
        marker = _max_id(stack)
        busy = dict(base, patients=args.patients, dermatologists=args.derms,
                    pacing_seconds=args.patients * one_photo_s / (2 * 2))
        load_during, backlog = [], []
        sampler = _Sampler(load_during, stack, marker, backlog)
        sampler.start()
        stats = run_locust(stack, busy, args.busy_seconds, out, f"w{workers}-busy")
        drain_started = time.monotonic()
        wait_for(lambda: stack.count(("queued", "processing")) == 0, args.drain_limit, what="busy phase drained")
        sampler.stop()
        times = photo_times(stack, marker)
        saturated = saturated_rate(backlog)
        figures["busy"] = {"pacing_s": round(busy["pacing_seconds"], 2), "requests": stats, **times,
                           "drain_s": round(time.monotonic() - drain_started, 1), "saturated": saturated,
                           "photos_per_minute_per_worker": _round(
                               (saturated.get("photos_per_minute") or 0) / workers),
                           "load_during": load_during[-1] if load_during else None, "load": load_averages()}
        figures["accounting"] = stack.photo_accounting()
        figures["accounting"].pop("half_written")
    return figures


def saturated_rate(samples: list[tuple[float, int, int]]) -> dict:
    """Photos finished per minute while a backlog waited (``queued`` ≥ 1 at both ends and at every sample
    between): the analysis capacity, not the arrival rate. ``samples``: ``(t, queued, finished)``."""
    best = None
    start = None
    for i, (t, queued, finished) in enumerate(samples + [(0.0, 0, 0)]):
        if queued >= 1 and start is None:
            start = i
        elif queued < 1 and start is not None:
            end = i - 1
            if end > start and (best is None or samples[end][0] - samples[start][0] > best[1] - best[0]):
                best = (samples[start][0], samples[end][0], samples[end][2] - samples[start][2])
            start = None
    if best is None or best[1] <= best[0]:
        return {"photos_per_minute": None, "window_s": 0, "finished_in_window": 0}
    return {"photos_per_minute": round(best[2] / (best[1] - best[0]) * 60, 2),
            "window_s": round(best[1] - best[0], 1), "finished_in_window": best[2]}


class _Sampler:
    """Every 2 s, during the busy phase and its drain: queued photos and finished ones (`saturated_rate`);
    every 10 s the load averages."""

    def __init__(self, loads: list, stack: Stack, after_id: int, backlog: list):
        import threading

        self.loads, self.stack, self.after, self.backlog = loads, stack, after_id, backlog
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()

    def stop(self):
        self._stop.set()
        self._thread.join()

    def _run(self):
        n = 0
        while not self._stop.wait(2):
            rows = dict(self.stack.sql("SELECT status, count(*) FROM photo WHERE id > :a GROUP BY status",
                                       a=self.after))
            self.backlog.append((time.monotonic(), rows.get("queued", 0),
                                 sum(rows.get(k, 0) for k in ("done", "rejected", "failed"))))
            n += 1
            if n % 5 == 0:
                self.loads.append(load_averages())


def summary(results: list[dict]) -> list[str]:
    by = {r["workers"]: r for r in results}
    lines = ["load bench (loopback, this machine: %d CPUs)" % os.cpu_count()]
    for r in results:
        busy, light, one = r["busy"], r["below_capacity"], r["one_photo"]
        req = busy["requests"]
        upload, queue = req.get("/u/[token] upload", {}), req.get("/queue", {})
        lines.append(
            f"  {r['workers']} worker(s): one photo {one['upload_to_result_p50_s']} s ({one['load']}); "
            f"busy: {busy['photos_per_minute_per_worker']} photos/min/worker (with a backlog: "
            f"{busy['saturated']['finished_in_window']} photos in {busy['saturated']['window_s']} s; "
            f"{busy['finished']} photos in all), upload p95 {upload.get('p95_ms')} ms (n {upload.get('n')}, "
            f"failures {upload.get('failures')}), queue p95 {queue.get('p95_ms')} ms (n {queue.get('n')}), "
            f"alert page p95 {req.get('/alerts/[id]', {}).get('p95_ms')} ms, {busy['load_during']}; "
            f"below capacity: upload-to-alert p95 {light['upload_to_alert_p95_s']} s over {light['alerts']} alerts "
            f"(upload-to-result p95 {light['upload_to_result_p95_s']} s), {light['load']}; "
            f"accounting: {r['accounting']['outcomes']}, analysed twice {r['accounting']['duplicate_analyses']}, "
            f"unfinished {len(r['accounting']['unfinished'])}")
    if 1 in by and 2 in by:
        t1 = by[1]["busy"]["saturated"].get("photos_per_minute") or 0
        t2 = by[2]["busy"]["saturated"].get("photos_per_minute") or 0
        ratio = round(t2 / t1, 2) if t1 else None
        lines.append(f"  2-worker / 1-worker throughput: {ratio} (target ≥ {TARGETS['ratio']}: "
                     f"{'reached' if ratio and ratio >= TARGETS['ratio'] else 'NOT reached'})")
    for r in results:
        upload = r["busy"]["requests"].get("/u/[token] upload", {}).get("p95_ms")
        queue = r["busy"]["requests"].get("/queue", {}).get("p95_ms")
        alert = r["below_capacity"]["upload_to_alert_p95_s"]
        one = r["one_photo"]["upload_to_result_p50_s"]
        lines.append(
            f"  {r['workers']} worker(s) targets: upload p95 ≤ {TARGETS['upload_p95_ms']} ms: "
            f"{_verdict(upload, TARGETS['upload_p95_ms'])}; queue p95 ≤ {TARGETS['queue_p95_ms']} ms: "
            f"{_verdict(queue, TARGETS['queue_p95_ms'])}; upload-to-alert p95 ≤ 2 × one photo ({one} s): "
            f"{_verdict(alert, TARGETS['alert_vs_one_photo'] * one if one else None)}")
    return lines


def _verdict(value, limit) -> str:
    if value is None or limit is None:
        return "not measured"
    return f"{value} → {'reached' if value <= limit else 'NOT reached'}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2", help="analysis worker counts, run one after the other")
    parser.add_argument("--patients", type=int, default=20, help="patients uploading together when busy")
    parser.add_argument("--derms", type=int, default=4, help="dermatologists polling the queue")
    parser.add_argument("--alerts", type=int, default=10_000, help="open alerts seeded")
    parser.add_argument("--followups", type=int, default=6, help="distinct follow-up photos per source photo")
    parser.add_argument("--light-seconds", type=int, default=45)
    parser.add_argument("--busy-seconds", type=int, default=60)
    parser.add_argument("--drain-limit", type=int, default=600, help="most seconds to wait for the backlog")
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn workers (WEB_WORKERS)")
    parser.add_argument("--web-threads", type=int, default=4, help="threads per gunicorn worker (WEB_THREADS; "
                        "1: gunicorn's sync worker)")
    parser.add_argument("--nice", type=int, default=10, help="niceness of the analysis workers "
                        "(PHOTO_WORKER_NICE; 0: same priority as the web)")
    parser.add_argument("--threads-per-worker", type=int, default=1,
                        help="OMP/OpenCV threads of each analysis process")
    parser.add_argument("--database-url", default=os.environ.get(
        "LOAD_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/scarwatch_load"))
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--out", default=str(REPO / "bench-out" / "load"))
    args = parser.parse_args(argv)
    out = Path(args.out)
    (out / "photos").mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    chosen = sources(min(args.patients, 10), args.seed)
    photos = [(source, followups(source, args.followups, out / "photos", seed=args.seed + i))
              for i, source in enumerate(chosen)]
    print(f"photos: {len(photos)} real phone photos from {SHARED_PHONE if SHARED_PHONE.exists() else 'the demo'}, "
          f"{args.followups} re-captures each ({time.monotonic() - started:.0f} s); {load_averages()}", flush=True)
    results = []
    for workers in (int(w) for w in args.workers.split(",")):
        results.append(one_worker_count(workers, args, photos, out))
        print(json.dumps(results[-1]), flush=True)
    (out / "load.json").write_text(json.dumps(results, indent=2))
    for line in summary(results):
        print(line, flush=True)
    ok = all(not r["accounting"]["duplicate_analyses"] and not r["accounting"]["unfinished"] for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
