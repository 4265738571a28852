"""``llmnet scale``: accuracy against the number of calls K, fitted laws and K* (Chen et al.)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from llmnet.cli.common import DEFAULT_CACHE, RayOption, SetOption, check_ray, fail, out, parse_sets, user_errors


@user_errors
def scale(file: Optional[Path] = typer.Argument(None, help="a Vote (generator + vote) or Filter-Vote network"),
          data: Optional[str] = typer.Option(None, "--data", help="dataset (with a network)"),
          pools: Optional[Path] = typer.Option(None, "--pools", help="recorded pools, JSONL: id, answer, samples "
                                               "[, verdicts]; no model calls"),
          ks: str = typer.Option("1,3,5,...,99", "--k", help="Ks to evaluate, e.g. 1,3,5,...,1000 or 1-50"),
          pool: Optional[int] = typer.Option(None, "--pool", min=1, max=100_000,
                                             help="M samples drawn per query (once; with a network)"),
          out_dir: Path = typer.Option(..., "--out", help="writes scaling.json and scaling.png"),
          fit_max_k: Optional[int] = typer.Option(None, "--fit-max-k", min=1, help="fit on K <= this, predict the rest"),
          buckets: str = typer.Option("easy_hard", "--buckets", help="easy_hard (d < 0 / d > 0) or quantile"),
          limit: Optional[int] = typer.Option(None, "--limit", min=1),
          set_: Optional[list[str]] = SetOption,
          cache: Path = typer.Option(DEFAULT_CACHE, "--cache"),
          no_cache: bool = typer.Option(False, "--no-cache"),
          ray: Optional[str] = RayOption) -> None:
    """Accuracy against the number of calls K, per difficulty bucket: shape, K*, fitted laws.

    Example: llmnet scale graphs/vote.yaml --data arithmetic:n=60,digits=1-2 --k 1,3,5,...,49 --pool 50 --fit-max-k 5 --out runs/scale
    Example: llmnet scale --pools pools.jsonl --k 1-250 --fit-max-k 5 --out runs/scale
    """
    from llmnet.scaling.experiment import analyse_pools, parse_ks, run_scaling, summary_lines

    ray = check_ray(ray)
    if buckets not in ("easy_hard", "quantile"):
        fail([f"--buckets must be easy_hard or quantile, not '{buckets}'"])
    k_list = parse_ks(ks)
    if pools is not None:
        if file is not None or data is not None or pool is not None:
            fail(["--pools analyses recorded samples: give it without a network, --data or --pool"])
        from llmnet.scaling.pools import read_pools

        result = analyse_pools(read_pools(pools), k_list, out_dir, fit_max_k=fit_max_k, buckets=buckets)
        out.print(f"{result['queries']} recorded pools ({result['method']}), no model calls")
    else:
        if file is None or data is None or pool is None:
            fail(["give a network FILE with --data and --pool, or --pools FILE.jsonl"])
        from llmnet.network.graph import load_network
        from llmnet.tasks.datasets import load_dataset

        sets = parse_sets(set_)
        if "K" not in sets and "${K}" in file.read_text(encoding="utf-8", errors="replace"):
            sets["K"] = pool  # scale sweeps K itself: a network's ${K} needs no default here
        net = load_network(file, sets)
        queries = load_dataset(data, limit)
        result = run_scaling(net, queries, k_list, pool, out_dir, None if no_cache else cache, fit_max_k, buckets,
                             progress=sys.stderr.isatty(), ray=ray)
        out.print(f"{result['queries']} queries x {pool} samples ({result['method']}); calls {result['calls']}, "
                  f"cache hits {result['cache_hits']}")
    for line in summary_lines(result):
        out.print(line)
    out.print(f"wrote {out_dir / 'scaling.json'} and {out_dir / 'scaling.png'}")
