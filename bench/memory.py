"""`make bench-memory`: is memory flat over a long run? Not a test: it asserts nothing.

Runs `simgen` (640x480, 10 objects, one worker per core) for --images images (default 5,000)
and samples the resident memory (RSS) of the main process and of every worker twice a second,
next to the number of images finished. Reports the peak RSS over the first 10% of the images
and over the whole run, per process and summed, and their ratio (flat: within 10%).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def main() -> int:
    import psutil

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--out", default="out/bench_memory.json")
    a = ap.parse_args()
    simgen = os.path.join(os.path.dirname(sys.executable), "simgen")
    early = max(1, a.images // 10)
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "d")
        proc = subprocess.Popen([simgen, f"num_images={a.images}", "camera.width=640", "camera.height=480",
                                 "objects.count=10", "progress=false", f"output_dir={data}"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        main_p = psutil.Process(proc.pid)
        parts = os.path.join(data, ".simgen", "parts")
        samples = []  # (seconds, images done, main MB, [worker MB, ...])
        t0 = time.time()
        while proc.poll() is None:
            try:
                kids = [c for c in main_p.children() if "resource_tracker" not in " ".join(c.cmdline())]
                rss_main = main_p.memory_info().rss / 2**20
                rss_w = sorted(c.memory_info().rss / 2**20 for c in kids)
                done = len(os.listdir(parts)) if os.path.isdir(parts) else 0
            except (psutil.NoSuchProcess, FileNotFoundError):
                continue
            samples.append((round(time.time() - t0, 1), done, round(rss_main, 1), [round(v, 1) for v in rss_w]))
            time.sleep(0.5)
        out, err = proc.communicate()
        if proc.returncode != 0:
            print(err, file=sys.stderr)
            return proc.returncode

    def peaks(rows):
        return {"main_mb": max(r[2] for r in rows), "worker_mb": max(max(r[3], default=0) for r in rows),
                "total_mb": max(r[2] + sum(r[3]) for r in rows)}

    first = peaks([r for r in samples if r[1] <= early])
    whole = peaks(samples)
    res = {"images": a.images, "seconds": samples[-1][0], "summary": out.strip().splitlines()[-2:],
           f"peak_first_{early}": first, "peak_all": whole,
           "ratio_all_over_first": {k: round(whole[k] / first[k], 3) for k in first},
           "samples": samples[:: max(1, len(samples) // 400)]}
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)
    print(f"simgen memory over {a.images} images ({res['seconds']:.0f} s):")
    for k in first:
        print(f"  peak {k}: first {early} images {first[k]:.0f} MB, all {whole[k]:.0f} MB "
              f"(x{res['ratio_all_over_first'][k]:.3f})")
    print(f"  written to {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
