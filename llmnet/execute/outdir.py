"""An output folder holds one run: its identity, resuming it, refusing another run in it.

``DIR/run.json`` names the run: a hash of the network (after ``--set``), the seed and
every query (id and content, in order), plus a random ``run_id`` kept across resumes
(the per-sample cache uses it to tell samples this run paid for from samples another run
paid for). Started again with the same run, the folder resumes: finished, answered
queries are kept, queries that ended in error are tried again. A different run in the
same folder is refused unless ``overwrite`` is set, so ``results.jsonl`` always holds
exactly the queries ``summary.json`` counts.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

from llmnet.errors import LlmnetError

RESULTS, SUMMARY, FINGERPRINT = "results.jsonl", "summary.json", "run.json"


class OutDirError(LlmnetError):
    """The output folder cannot be used (not a folder, not writable, holds another run)."""


def run_identity(network_yaml: str, query_fingerprints: list[tuple[str, str]], seed: int,
                 keep_text: bool = False) -> str:
    """A hash of what decides a run's results (not how fast or how cheaply they come)."""
    h = hashlib.sha256()
    h.update(network_yaml.encode("utf-8", "surrogatepass"))
    h.update(f"\x00seed={seed}\x00keep_text={keep_text}\x00".encode())
    for qid, qhash in query_fingerprints:
        h.update(f"{qid}\x1f{qhash}\x1e".encode("utf-8", "surrogatepass"))
    return h.hexdigest()[:24]


def check_out_dir(out_dir: Path, given: str | None = None) -> None:
    """Refuse unusable folders before anything is created (one line naming the path and the fix).
    ``given`` is the text the user typed (``Path("")`` reads as ``.``)."""
    if not str(out_dir).strip() or (given is not None and not given.strip()):
        raise OutDirError("--out needs a folder path, e.g. --out runs/vote")
    if out_dir.exists() and not out_dir.is_dir():
        raise OutDirError(f"--out {out_dir} is a file, not a folder; give a folder path (it is created if missing)")
    probe = out_dir
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise OutDirError(f"--out {out_dir}: {probe} is a file, so the folder cannot be created; choose another path")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise OutDirError(f"--out {out_dir}: {probe} is not writable; choose a folder you can write to")


def remove_stale_temp_files(out_dir: Path) -> None:
    """Temp files of a final rewrite that a kill interrupted (``.results.jsonl.PID.tmp``)."""
    for name in (RESULTS, SUMMARY, FINGERPRINT):
        for tmp in out_dir.glob(f".{name}.*.tmp"):
            try:
                tmp.unlink()
            except OSError:
                pass


def atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def read_finished(path: Path) -> dict[str, str]:
    """Finished results (id -> line) of an earlier run; a torn last line is cut off the file."""
    done: dict[str, str] = {}
    if not path.exists():
        return done
    good_bytes = 0
    with path.open("rb") as fh:
        for raw in fh:
            if not raw.endswith(b"\n"):
                break
            try:
                rec = json.loads(raw)
                done[str(rec["id"])] = raw.decode().rstrip("\n")
            except (ValueError, KeyError, TypeError):
                break
            good_bytes += len(raw)
    if good_bytes != path.stat().st_size:
        with path.open("rb+") as fh:
            fh.truncate(good_bytes)
    return done


def _read_run_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def open_run(out_dir: Path, identity: str, name: str, total: int, overwrite: bool = False) -> tuple[str, dict[str, str]]:
    """Prepare ``out_dir`` for the run ``identity``: returns its ``run_id`` and the finished,
    answered results to keep (id -> line). Raises OutDirError for a different run unless
    ``overwrite``, which deletes the old run's files first."""
    check_out_dir(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutDirError(f"--out {out_dir}: cannot create the folder ({exc.strerror or exc}); "
                          f"choose another path") from None
    remove_stale_temp_files(out_dir)
    results_path, run_path = out_dir / RESULTS, out_dir / FINGERPRINT
    theirs = _read_run_file(run_path) if run_path.exists() else {}
    has_results = results_path.exists() and results_path.stat().st_size > 0
    foreign = (theirs.get("identity") != identity) and (has_results or bool(theirs))
    if foreign and not overwrite:
        what = f"run '{theirs.get('name')}'" if theirs.get("name") else "run"
        raise OutDirError(f"--out {out_dir} holds another {what} (a different network, dataset, --set, --limit "
                          f"or --seed); use another --out, or add --overwrite to replace it")
    if foreign:
        for stale in (RESULTS, SUMMARY, FINGERPRINT):
            (out_dir / stale).unlink(missing_ok=True)
        theirs = {}
    run_id = theirs.get("run_id") if isinstance(theirs.get("run_id"), str) else None
    run_id = run_id or secrets.token_hex(8)
    atomic_write(run_path, json.dumps({"identity": identity, "run_id": run_id, "name": name,
                                       "queries": total}) + "\n")
    on_disk = read_finished(results_path)
    kept = {qid: line for qid, line in on_disk.items() if json.loads(line).get("error") is None}
    return run_id, kept
