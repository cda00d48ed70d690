"""A year of monthly batches through score and monitor, with a slow drift that starts at a chosen month.

`make monitor-demo` runs it after `dvc repro train`. In a scratch copy of the project's trained state
(tmp/monitor-demo/: the feature tables, the model and its digest, the problem, the schemas; the project's own
outputs are untouched), each month's batch resamples the labelled hold-out table `data/features/test.parquet`
(`stages.monitor.monthly_batches`), and from the drift month on multiplies the drifting features by 1.8, 1.86, ...
Each batch is scored (`stages.score.run`: validated, then predicted) and monitored (`stages.monitor.run`); its labels
arrive as its outcome file `--lag` months later. One line per month: date, largest drift and its feature, the
realised metric known then, the verdict and its reasons. Exits 1 unless the verdict is ok before the drift month and
retrain from it on.

The model-age rule needs `reports/backtest.json`; the scratch copy has none unless `--backtest` copies the project's,
so by default that rule is skipped (and the verdicts say so).
"""
import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COPIED = ["params.yaml", "dvc.yaml", "data/schema", "data/features/train.parquet", "data/features/test.parquet",
          "data/features/spec.json", "models/model.skops", "models/model.skops.sha256", "reports/problem.json"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--drift-month", type=int, default=7, help="the first drifting month, counted from 1")
    parser.add_argument("--features", nargs="+", default=["spend_90d", "spend_180d"])
    parser.add_argument("--start", type=float, default=1.8, help="the drifting features' factor in the drift month")
    parser.add_argument("--step", type=float, default=0.06, help="and how much it grows each month after")
    parser.add_argument("--rows", type=int, default=4000, help="rows per batch, resampled from the hold-out table")
    parser.add_argument("--first-month", default="2025-05-01")
    parser.add_argument("--lag", type=int, default=3, help="months until a batch's outcomes arrive")
    parser.add_argument("--backtest", action="store_true", help="copy reports/backtest.json: judge the model's age too")
    parser.add_argument("--folder", type=Path, default=ROOT / "tmp" / "monitor-demo")
    args = parser.parse_args(argv)

    missing = [p for p in COPIED if not (ROOT / p).exists()]
    if missing:
        print(f"missing {missing[0]}: run `dvc repro train` first (make monitor-demo does)", file=sys.stderr)
        return 2
    import pandas as pd

    from ml_lifecycle import catalog
    from ml_lifecycle.core import StageError, read_yaml
    from ml_lifecycle.params import declared_view
    from ml_lifecycle.stages import monitor, score
    from ml_lifecycle.tables import write_table

    scratch = args.folder
    shutil.rmtree(scratch, ignore_errors=True)
    for path in COPIED + (["reports/backtest.json"] if args.backtest else []):
        (scratch / path).parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if (ROOT / path).is_dir() else shutil.copy2)(ROOT / path, scratch / path)
    values = read_yaml(scratch / "params.yaml")
    values["monitor"] = {**values["monitor"], "outcomes": "outcomes", "batch_date": None}
    problem = values["problem"]
    held_out = pd.read_parquet(scratch / catalog.TEST)
    batches = list(monitor.monthly_batches(held_out, args.first_month, args.months, args.rows, problem["label"],
                                           problem["id_column"], args.drift_month - 1, tuple(args.features), args.start,
                                           args.step))
    print(f"{args.months} monthly batches of {args.rows} rows from {catalog.TEST}; {', '.join(args.features)} drift "
          f"from month {args.drift_month} ({batches[args.drift_month - 1][0]}) on: x{args.start:g}, then {args.step:+g} a month; "
          f"outcomes arrive {args.lag} months later; threshold {values['monitor']['drift_threshold']:g}\n")
    print(f"{'month':8} {'batch date':11} {'max drift (feature)':38} {'pred. shift':>11} {'realised (batch)':>24}  verdict")
    verdicts = []
    for month, (name, batch, outcome) in enumerate(batches):
        write_table(batch, scratch / "batches" / f"{name}.parquet")
        if month >= args.lag:   # the labels of the batch `lag` months back arrive
            earlier, _, labels = batches[month - args.lag]
            write_table(labels, scratch / "outcomes" / f"{earlier}.parquet")
        run_values = {**values, "score": {**values["score"], "batch": f"batches/{name}.parquet"}}
        try:
            score.run(declared_view("score", run_values, scratch), scratch)
        except StageError as refused:   # beyond the schema's skew thresholds: no predictions, nothing to monitor
            verdicts.append("refused")
            print(f"{month + 1:<8} {name:11} refused by score: {refused.problem}")
            continue
        verdict = monitor.run(declared_view("monitor", run_values, scratch), scratch)
        verdicts.append(verdict["verdict"])
        realised = (f"{verdict['realised_metric']:.3f} ({verdict['realised_batch']})" if verdict["realised_metric"]
                    is not None else "-")
        drift = f"{verdict['max_drift']:.3f} ({verdict['max_drift_feature']})"
        print(f"{month + 1:<8} {verdict['batch_date']:11} {drift:38} {verdict['prediction_shift']:11.3f} {realised:>24}  "
              f"{verdict['verdict']}" + (f": {'; '.join(verdict['reasons'])}" if verdict["reasons"] else ""))
    print("\nskipped rules (last batch): " + ("; ".join(verdict["skipped"]) or "none"))
    history = pd.read_csv(scratch / catalog.MONITOR_HISTORY)
    shown = scratch.resolve().relative_to(ROOT) if scratch.resolve().is_relative_to(ROOT) else scratch
    print(f"\nThe history ({shown / catalog.MONITOR_HISTORY}), realised metrics filled as outcomes arrived:\n")
    print(history.to_string(index=False))
    expected = ["ok"] * (args.drift_month - 1) + ["retrain"] * (args.months - args.drift_month + 1)
    if verdicts != expected:
        print(f"\nunexpected verdicts: {verdicts}, expected {expected}", file=sys.stderr)
        return 1
    print(f"\nok before month {args.drift_month}, retrain from it on, as expected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
