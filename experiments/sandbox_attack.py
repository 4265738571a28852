"""Hostile programs against the sandbox: how many each layer contains, by category.

    python experiments/sandbox_attack.py --out experiments/out     # every attack, every mode
    python experiments/sandbox_attack.py --smoke --out /tmp/x      # one attack per category

The attacks (86 programs across resources, files, secrets, network, processes, interpreter
tampering, verdict forging and weak tests) and the harness that judges them, from outside
the sandbox, live in ``tests/tasks/sandbox_attacks.py``. Each runs through ``run_sandboxed``
in four modes: the kernel layers alone (``audit=False``), the audit hook alone
(``isolate=False``), both (the default), and the kernel layers alone with bubblewrap as the
wall (when installed and not already the default). Writes ``sandbox_attack.json``: contained /
total per category and mode, the median seconds of a trivial run per mode, and each
attack's outcome.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llmnet.tasks.sandbox import run_sandboxed, sandbox_isolation  # noqa: E402
from tests.tasks.sandbox_attacks import (  # noqa: E402
    LIMITS,
    SIDE_EFFECTS,
    WALLS,
    attacks,
    mode_kwargs,
    run_attack,
    wall_isolation,
)


def seconds_per_run(modes: list[str], runs: int) -> dict[str, float]:
    """Median wall time of one trivial sandboxed run per mode (and with no layer at all),
    measured side by side, so the price of each layer shows."""
    program, tests = "def f(x):\n    return x + 1\n", ["assert f(1) == 2", "assert f(2) == 3"]
    kwargs = {m: mode_kwargs(m) for m in modes}
    kwargs["none"] = {"audit": False, "isolate": False}
    times: dict[str, list[float]] = {m: [] for m in kwargs}
    for _ in range(runs):
        for mode, kw in kwargs.items():
            r = run_sandboxed(program, tests, **LIMITS, **kw)
            assert r.passed, (mode, r.detail)
            times[mode].append(r.duration_s)
    return {m: round(statistics.median(t), 4) for m, t in times.items()}


def summarise(rows: list[dict]) -> dict:
    out: dict = {}
    for row in rows:
        cell = out.setdefault(row["mode"], {}).setdefault(row["category"], {"contained": 0, "total": 0})
        cell["total"] += 1
        cell["contained"] += bool(row["contained"])
    for mode, cats in out.items():
        side = [c for k, c in cats.items() if k in SIDE_EFFECTS]
        cats["all side effects"] = {"contained": sum(c["contained"] for c in side),
                                    "total": sum(c["total"] for c in side)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "experiments" / "out")
    ap.add_argument("--smoke", action="store_true", help="one attack per category (seconds)")
    ap.add_argument("--modes", default="kernel,hook,both,bwrap,userns",
                    help="bwrap / userns: the kernel layers alone with bubblewrap / unshare in a user "
                         "namespace as the wall (when usable here and not already the default)")
    args = ap.parse_args(argv)
    iso = sandbox_isolation()
    modes = [m for m in args.modes.split(",") if m not in WALLS or (
        iso.wall != WALLS[m] and wall_isolation(m) is not None)]
    chosen = attacks()
    if args.smoke:
        seen: set[str] = set()
        chosen = [a for a in chosen if a.category not in seen and not seen.add(a.category)
                  and not a.extra.get("kill_parent")]
    rows = []
    for mode in modes:
        if mode != "hook" and not iso.layers:
            print(f"mode {mode}: skipped, this machine has no kernel layers ({iso.describe()})")
            continue
        for attack in chosen:
            if attack.kernel_only and (mode == "hook" or "pid" not in iso.layers):
                continue
            rows.append(run_attack(attack, mode))
            if not rows[-1]["contained"]:
                print(f"NOT CONTAINED [{mode}] {attack.category}: {attack.name} ({rows[-1]['status']})")
    summary = summarise(rows)
    timing = seconds_per_run(modes, 3 if args.smoke else 15)
    walls = {m: wall_isolation(m).describe() for m in modes if m in WALLS}
    report = {"isolation": iso.describe(), "layers": list(iso.layers), "attacks": len(chosen),
              "walls": walls, "modes": modes,
              "limits": LIMITS, "summary": summary, "seconds_per_run": timing, "rows": rows, "smoke": args.smoke,
              "command": "python experiments/sandbox_attack.py" + (" --smoke" if args.smoke else "")}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sandbox_attack.json").write_text(json.dumps(report, indent=1) + "\n")
    print("median seconds per run: " + ", ".join(f"{m} {t:.3f}" for m, t in timing.items()))
    for mode, cats in summary.items():
        print(mode + ": " + ", ".join(f"{k} {v['contained']}/{v['total']}" for k, v in cats.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
