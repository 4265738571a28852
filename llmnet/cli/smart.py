"""``llmnet smart``: SMART profiling and model mixing (Jo & Trummer)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from llmnet.cli.common import DEFAULT_CACHE, LiveProgress, SetOption, fail, out, parse_sets, user_errors


@user_errors
def smart(file: Path = typer.Argument(..., help="network file holding the reference and the candidates"),
          data: str = typer.Option(..., "--data", help="dataset (items are taken in this order)"),
          reference: str = typer.Option(..., "--reference", help="subgraph or model whose answers are the target"),
          candidates: str = typer.Option(..., "--candidates", help="comma-separated subgraphs or models"),
          accuracy: float = typer.Option(0.95, "--accuracy", help="target agreement with the reference, 1 - delta"),
          confidence: float = typer.Option(0.95, "--confidence", help="gamma: probability the target holds"),
          mix: bool = typer.Option(False, "--mix", help="mix models on the remaining items (LP over shares)"),
          bound: str = typer.Option("clopper-pearson", "--bound", help="clopper-pearson (paper) or anytime"),
          out_dir: Path = typer.Option(..., "--out", help="writes smart.json, smart.png and plan.json"),
          limit: Optional[int] = typer.Option(None, "--limit"),
          set_: Optional[list[str]] = SetOption,
          cache: Path = typer.Option(DEFAULT_CACHE, "--cache"),
          no_cache: bool = typer.Option(False, "--no-cache"),
          check: bool = typer.Option(True, "--check-agreement/--no-check-agreement",
                                     help="also run the reference on applied items to measure the realised agreement"),
          cost: str = typer.Option("auto", "--cost", help="auto (dollars if priced, else tokens), usd or tokens"),
          no_progress: bool = typer.Option(False, "--no-progress", help="no progress display")) -> None:
    """SMART: profile cheaper candidates against a reference, then use the cheapest that is good enough.

    Example: llmnet smart graphs/smart_local.yaml --data arithmetic:n=300 --reference strong --candidates cheap,mid --out runs/smart
    """
    from llmnet.network.graph import load_network
    from llmnet.smart.experiment import run_smart, save_smart
    from llmnet.tasks.datasets import load_dataset

    if not 0 < accuracy < 1 or not 0 < confidence < 1:
        fail(["--accuracy and --confidence must be between 0 and 1"])
    if bound not in ("clopper-pearson", "anytime"):
        fail([f"--bound must be clopper-pearson or anytime, not '{bound}'"])
    if cost not in ("auto", "usd", "tokens"):
        fail([f"--cost must be auto, usd or tokens, not '{cost}'"])
    names = [c.strip() for c in candidates.split(",") if c.strip()]
    if not names:
        fail(["--candidates needs at least one name"])
    net = load_network(file, parse_sets(set_))
    queries = load_dataset(data, limit)
    with LiveProgress(f"SMART: profiling {', '.join(names)} against {reference}", not no_progress):
        result, details = run_smart(net, queries, reference, names, delta=1 - accuracy, gamma=confidence,
                                    bound=bound, mix=mix, cache_path=None if no_cache else cache,
                                    check_agreement=check, measure=cost)
    paths = save_smart(result, details, out_dir)
    agree = "n/a" if result.realised_agreement is None else f"{result.realised_agreement:.3f}"
    out.print(f"profiled {result.profiled}/{result.n_items} items; plan {dict(result.plan.counts) or 'reference'}; "
              f"cost {result.total_cost:.6g} vs reference-only {result.reference_cost:.6g} {details['cost_unit']} "
              f"(savings x{result.savings:.2f}); realised agreement {agree}")
    out.print(f"wrote {paths['json']}, {paths['png']} and {paths['plan']}")
