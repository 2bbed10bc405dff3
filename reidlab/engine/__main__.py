"""``python -m reidlab.engine``: train one run from a config file (also under torchrun), or evaluate a checkpoint.

    python -m reidlab.engine --config cfg.yaml [--set model.fusion=softmax_cosine ...] [--force] [--no-resume]
    torchrun --nproc_per_node=2 -m reidlab.engine --config cfg.json
    python -m reidlab.engine --eval results/runs/<id>/checkpoints/last.pt [--set eval.rerank=true]
"""

from __future__ import annotations

import argparse
import sys


def _parse_sets(items: list[str]) -> dict:
    import yaml

    from reidlab.config import ConfigError

    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        out[key.strip()] = value
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m reidlab.engine", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--config", help="run config (.json / .yaml); omitted = all defaults")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a dotted config key (value parsed as YAML), repeatable")  # fmt: skip
    ap.add_argument("--force", action="store_true", help="re-run a finished run id (discards its record)")
    ap.add_argument("--no-resume", action="store_true", help="start over instead of resuming an unfinished run")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    ap.add_argument("--eval", metavar="CHECKPOINT", help="evaluate a checkpoint instead of training")
    args = ap.parse_args(argv)

    from reidlab.config import ConfigError, RunConfig
    from reidlab.engine.trainer import PreflightError, TrainingError, evaluate_checkpoint, train

    try:
        sets = _parse_sets(args.set)
        if args.eval:
            res = evaluate_checkpoint(args.eval, progress=not args.no_progress, overrides=sets or None)
            cmc = res.cmc
            print(f"mAP {res.mAP:.4f}  rank1 {cmc[0]:.4f}  rank5 {cmc[min(4, len(cmc) - 1)]:.4f}  "
                  f"rank10 {cmc[min(9, len(cmc) - 1)]:.4f}  mINP {res.mINP:.4f}")  # fmt: skip
            return 0
        cfg = RunConfig.from_file(args.config) if args.config else RunConfig()
        if sets:
            cfg = cfg.override(sets)
        rec = train(cfg, force=args.force, resume=not args.no_resume, progress=not args.no_progress)
        print(f"run record: {rec.run_dir} ({rec.state})", flush=True)
        return 0
    except KeyboardInterrupt:
        print("interrupted: status and checkpoint saved; run the same command again to resume", file=sys.stderr)
        return 130
    except (ConfigError, PreflightError, TrainingError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
