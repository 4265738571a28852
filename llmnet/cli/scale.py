"""``llmnet scale``: accuracy against the number of calls K, fitted laws and K* (Chen et al.)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from llmnet.cli.common import DEFAULT_CACHE, RayOption, SetOption, fail, out, parse_sets, user_errors


@user_errors
def scale(file: Path = typer.Argument(..., help="a Vote (generator + vote) or Filter-Vote network"),
          data: str = typer.Option(..., "--data", help="dataset"),
          ks: str = typer.Option("1,3,5,...,99", "--k", help="Ks to evaluate, e.g. 1,3,5,...,1000 or 1-50"),
          pool: int = typer.Option(..., "--pool", min=1, max=100_000, help="M samples drawn per query (once)"),
          out_dir: Path = typer.Option(..., "--out", help="writes scaling.json and scaling.png"),
          fit_max_k: Optional[int] = typer.Option(None, "--fit-max-k", min=1, help="fit on K <= this, predict the rest"),
          buckets: str = typer.Option("easy_hard", "--buckets", help="easy_hard (d < 0 / d > 0) or quantile"),
          limit: Optional[int] = typer.Option(None, "--limit", min=1),
          set_: Optional[list[str]] = SetOption,
          cache: Path = typer.Option(DEFAULT_CACHE, "--cache"),
          no_cache: bool = typer.Option(False, "--no-cache"),
          ray: Optional[str] = RayOption) -> None:
    """Accuracy against the number of calls K, per difficulty bucket, with fitted laws and K*.

    Example: llmnet scale graphs/vote.yaml --data arithmetic:n=60,digits=1-2 --k 1,3,5,...,49 --pool 50 --fit-max-k 5 --out runs/scale
    """
    from llmnet.network.graph import load_network
    from llmnet.scaling.experiment import parse_ks, run_scaling
    from llmnet.tasks.datasets import load_dataset

    if buckets not in ("easy_hard", "quantile"):
        fail([f"--buckets must be easy_hard or quantile, not '{buckets}'"])
    k_list = parse_ks(ks)
    net = load_network(file, parse_sets(set_))
    queries = load_dataset(data, limit)
    result = run_scaling(net, queries, k_list, pool, out_dir, None if no_cache else cache, fit_max_k, buckets,
                         progress=sys.stderr.isatty(), ray=ray)
    out.print(f"{result['queries']} queries x {pool} samples ({result['method']}); calls {result['calls']}, "
              f"cache hits {result['cache_hits']}")
    out.print(f"wrote {out_dir / 'scaling.json'} and {out_dir / 'scaling.png'}")
