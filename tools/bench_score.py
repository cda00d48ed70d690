"""Benchmark the score stage's two passes on a large batch: wall time and peak memory by chunk size.

Builds a batch of N rows by resampling the serving snapshot (fresh ids), then, each in a fresh child process so peak
memory is its own, validates it against the SERVING schema (the whole batch's statistics, merged over its chunks, and
skew against a sample of the training rows) and scores it with the trained model (verified against its digest).
Needs a finished pipeline run (models/ and data/features/). Usage: python tools/bench_score.py [rows]
"""
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from ml_lifecycle.tables import read_json
from ml_lifecycle.stages.score import batch_anomalies, batch_chunks, score_chunk, write_predictions
from ml_lifecycle.modelling import load_model, model_parts
root, batch, chunk_rows, phase = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
spec = read_json(root / "data/features/spec.json")
started = time.perf_counter()
model = load_model(root / "models/model.skops", stage="score")   # the model file cleans, scores and decides
if phase == "validate":   # as the stage does it: the batch cleaned chunk by chunk, its statistics merged, checked once
    found, unseen, skew = batch_anomalies(batch_chunks(batch, spec, model_parts(model, "score")[0], chunk_rows), spec,
                                          root / "data/features/train.parquet", 50_000, root,
                                          {"max_share": 0.02, "by_feature": {}}, chunk_rows)
    out = {"anomalies": len(found)}
else:
    out = write_predictions((score_chunk(model, c, spec) for c in batch_chunks(batch, spec, None, chunk_rows)),
                            batch.with_name("predictions.parquet"))
out["seconds"] = round(time.perf_counter() - started, 1)
out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
print(json.dumps(out))
"""


def make_batch(rows: int, folder: Path) -> Path:
    serving = pd.read_parquet(ROOT / "data/features/serving.parquet")
    batch = serving.sample(n=rows, replace=True, random_state=0).reset_index(drop=True)
    batch["customer_id"] = np.arange(10_000_000, 10_000_000 + rows)
    path = folder / "batch.parquet"
    batch.to_parquet(path, index=False, row_group_size=50_000)
    return path


def main() -> int:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        batch = make_batch(rows, Path(tmp))
        print(f"batch: {rows:,} rows, {batch.stat().st_size / 2**20:.0f} MiB Parquet, built in {time.perf_counter() - started:.0f}s")
        print(f"{'phase':<10}{'chunk_rows':>12}{'seconds':>10}{'peak_rss_mb':>13}  result")
        for phase in ("score", "validate"):
            for chunk_rows in (rows, 100_000, 20_000):
                result = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), str(batch), str(chunk_rows), phase],
                                        capture_output=True, text=True, env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
                if result.returncode != 0:
                    print(result.stderr[-2000:])
                    return 1
                out = json.loads(result.stdout.strip().splitlines()[-1])
                print(f"{phase:<10}{chunk_rows:>12,}{out.pop('seconds'):>10}{out.pop('peak_rss_mb'):>13}  {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
