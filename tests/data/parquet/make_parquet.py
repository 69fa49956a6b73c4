"""Writes the Parquet fixture from a bundled CSV scenario with pandas + pyarrow, an independent
writer, so the test checks Vigil's Parquet reader against what the CSV reader sees.

Metrics get a real timestamp column (datetime64[ns, UTC]); spans keep `start` as a timestamp with
nanoseconds and `error` as booleans. Run from the repository root:
    python tests/data/parquet/make_parquet.py
"""
import os, shutil
import pandas as pd

ID = "tt-20230129-f24-ts-contacts-service-cpu_contention"
src = os.path.join("datasets", "nezha", ID)
dst = os.path.join("analyzer", "tests", "data", "parquet", ID)
shutil.rmtree(dst, ignore_errors=True)
os.makedirs(dst)
shutil.copy(os.path.join(src, "scenario.json"), dst)
for side in ("baseline", "canary"):
    os.makedirs(os.path.join(dst, side))
    m = pd.read_csv(os.path.join(src, side, "metrics.csv"))
    m["timestamp"] = pd.to_datetime(m["timestamp"], utc=True)
    m.to_parquet(os.path.join(dst, side, "metrics.parquet"), engine="pyarrow", index=False)
    s = pd.read_csv(os.path.join(src, side, "spans.csv"), dtype={"parent_id": str})
    s["start"] = pd.to_datetime(s["start"], utc=True, format="ISO8601")
    s["error"] = False
    s.to_parquet(os.path.join(dst, side, "spans.parquet"), engine="pyarrow", index=False, compression="zstd")
    shutil.copy(os.path.join(src, side, "logs.jsonl"), os.path.join(dst, side))
