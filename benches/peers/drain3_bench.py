#!/usr/bin/env python3
"""Times drain3 and `vigil logs parse` end to end on the same files, in the same run.

Input: the directory written by `cargo run -p vigil-benches --release --bin gen_logs -- DIR`
(`<System>.log`, 100 000 messages each, 1 000 000 in all). For each system, drain3 runs with
logparser's Drain benchmark settings for that system (masking regexes, similarity threshold,
depth; max_children 100; parametrize_numeric_tokens), reads the file, mines every line and
writes each line's final template; `vigil logs parse --format csv FILE` does the same job.
Both are measured in wall time and in CPU time (the machine is shared, so wall time includes
waiting for a core). Prints a Markdown table and the ratio.

Usage: drain3_bench.py DATA_DIR VIGIL_BINARY [--systems HDFS,Spark] [--threads N]
Needs: pip install drain3==0.9.11
"""
import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

from drain3 import TemplateMiner
from drain3.masking import MaskingInstruction
from drain3.template_miner_config import TemplateMinerConfig

# logparser's Drain benchmark settings (regex list, st, depth), from the Loghub slice's README.
SETTINGS = {
    "HDFS": ([r"blk_-?\d+", r"(\d+\.){3}\d+(:\d+)?"], 0.5, 4),
    "Hadoop": ([r"(\d+\.){3}\d+"], 0.5, 4),
    "Spark": ([r"(\d+\.){3}\d+", r"\b[KGTM]?B\b", r"([\w-]+\.){2,}[\w-]+"], 0.5, 4),
    "Zookeeper": ([r"(/|)(\d+\.){3}\d+(:\d+)?"], 0.5, 4),
    "BGL": ([r"core\.\d+"], 0.5, 4),
    "HPC": ([r"=\d+"], 0.5, 4),
    "Thunderbird": ([r"(\d+\.){3}\d+"], 0.5, 4),
    "Windows": ([r"0x.*?\s"], 0.7, 5),
    "Linux": ([r"(\d+\.){3}\d+", r"\d{2}:\d{2}:\d{2}"], 0.39, 6),
    "Android": (
        [r"(/[\w-]+)+", r"([\w-]+\.){2,}[\w-]+", r"\b(\-?\+?\d+)\b|\b0[Xx][a-fA-F\d]+\b|\b[a-fA-F\d]{4,}\b"],
        0.2,
        6,
    ),
}


def drain3_miner(system):
    regexes, st, depth = SETTINGS[system]
    cfg = TemplateMinerConfig()
    cfg.masking_instructions = [MaskingInstruction(r, "*") for r in regexes]
    cfg.drain_sim_th = st
    cfg.drain_depth = depth
    cfg.drain_max_children = 100
    cfg.parametrize_numeric_tokens = True
    cfg.profiling_enabled = False
    return TemplateMiner(persistence_handler=None, config=cfg)


def run_drain3(system, path, out_path):
    wall0, cpu0 = time.perf_counter(), time.process_time()
    miner = drain3_miner(system)
    ids = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            ids.append(miner.add_log_message(line.rstrip("\n"))["cluster_id"])
    templates = {c.cluster_id: c.get_template() for c in miner.drain.clusters}
    with open(out_path, "w", encoding="utf-8") as out:
        for i, cid in enumerate(ids, 1):
            out.write(f"{i},{cid},{templates[cid]}\n")
    return len(ids), time.perf_counter() - wall0, time.process_time() - cpu0, len(templates)


def run_vigil(binary, path, out_path, threads):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall0 = time.perf_counter()
    with open(out_path, "w", encoding="utf-8") as out:
        subprocess.run(
            [binary, "logs", "parse", "--format", "csv", "--threads", str(threads), path],
            stdout=out,
            check=True,
        )
    wall = time.perf_counter() - wall0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    with open(out_path, encoding="utf-8") as f:
        lines = sum(1 for _ in f) - 1
    return lines, wall, cpu


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data_dir")
    ap.add_argument("vigil")
    ap.add_argument("--systems", default=",".join(SETTINGS))
    ap.add_argument("--threads", type=int, default=0, help="vigil --threads (0 = all cores)")
    args = ap.parse_args()
    systems = [s for s in args.systems.split(",") if s]
    rows = []
    tot = {"n": 0, "dw": 0.0, "dc": 0.0, "vw": 0.0, "vc": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        for s in systems:
            path = os.path.join(args.data_dir, f"{s}.log")
            n, dw, dc, dt = run_drain3(s, path, os.path.join(tmp, f"{s}.drain3.csv"))
            vn, vw, vc = run_vigil(args.vigil, path, os.path.join(tmp, f"{s}.vigil.csv"), args.threads)
            if vn != n:
                sys.exit(f"{s}: vigil printed {vn} lines, drain3 {n}")
            rows.append((s, n, dt, n / dw, n / dc, n / vw, n / vc))
            for k, v in (("n", n), ("dw", dw), ("dc", dc), ("vw", vw), ("vc", vc)):
                tot[k] += v
            print(f"{s}: drain3 {n / dw:,.0f} lines/s wall, vigil {n / vw:,.0f} lines/s wall", file=sys.stderr)
    print("| system | lines | drain3 templates | drain3 lines/s (wall) | drain3 lines/s (CPU) "
          "| vigil lines/s (wall) | vigil lines/s (CPU) | ratio (wall) | ratio (CPU) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for s, n, dt, dw, dc, vw, vc in rows:
        print(f"| {s} | {n:,} | {dt} | {dw:,.0f} | {dc:,.0f} | {vw:,.0f} | {vc:,.0f} | {vw / dw:.0f}x | {vc / dc:.0f}x |")
    n = tot["n"]
    dw, dc, vw, vc = n / tot["dw"], n / tot["dc"], n / tot["vw"], n / tot["vc"]
    print(f"| **all** | {n:,} | | {dw:,.0f} | {dc:,.0f} | {vw:,.0f} | {vc:,.0f} | **{vw / dw:.0f}x** | **{vc / dc:.0f}x** |")


if __name__ == "__main__":
    main()
