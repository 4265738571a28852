"""The hostile suite (``tests/tasks/sandbox_attacks.py``; ``experiments/sandbox_attack.py``
reports it) as tests: every program that aims at a side effect is contained by the kernel
layers alone (``audit=False``), and no wrong program passes an equality-form test with every
layer on. An attack needing a layer this
machine lacks is skipped, and the reason names the layer."""

from __future__ import annotations

import shutil

import pytest

from llmnet.tasks.sandbox import sandbox_isolation
from tests.tasks import sandbox_attacks as suite

ISO = sandbox_isolation()
NEEDS = {"resources": ("pid",), "files": ("filesystem",), "secrets": ("filesystem",), "network": ("network",),
         "processes": ("pid",), "interpreter": ("filesystem", "pid")}
ATTACKS = suite.attacks()


def test_the_suite_is_large_and_covers_every_category():
    cats = {a.category for a in ATTACKS}
    assert len(ATTACKS) >= 60 and set(suite.SIDE_EFFECTS) | {"forging"} <= cats
    names = " ".join(a.name for a in ATTACKS)
    for needed in ("chdir race", "dir_fd", "mknod", "mkfifo", "closures", "frame walking to the key",
                   "always-true __eq__", "llmnet killed"):
        assert needed in names


@pytest.mark.parametrize("attack", [a for a in ATTACKS if a.category in suite.SIDE_EFFECTS], ids=lambda a: a.name)
def test_kernel_layers_alone_contain(attack):
    missing = [layer for layer in NEEDS[attack.category] + (("pdeathsig",) if attack.extra.get("kill_parent") else ())
               if layer not in ISO.layers]
    if missing:
        pytest.skip(f"this machine lacks the kernel layer(s) {missing}: {ISO.describe()}")
    row = suite.run_attack(attack, "kernel")
    assert row["contained"], row


@pytest.mark.parametrize("attack", [a for a in ATTACKS if a.category == "forging"], ids=lambda a: a.name)
def test_no_forged_pass_on_equality_tests(attack):
    row = suite.run_attack(attack, "both")
    assert row["contained"], row


@pytest.mark.parametrize("mode", ["bwrap", "userns"])
@pytest.mark.parametrize("attack", [a for a in ATTACKS if a.category in suite.SIDE_EFFECTS
                                    and a.category != "resources"], ids=lambda a: a.name)
def test_the_other_walls_alone_contain(attack, mode):
    if mode == "bwrap" and shutil.which("bwrap") is None:
        pytest.skip("bubblewrap (bwrap) is not installed here: only its cases are skipped")
    if suite.wall_isolation(mode) is None:
        pytest.skip(f"the {suite.WALLS[mode]} wall cannot be built here (no user namespaces?)")
    row = suite.run_attack(attack, mode)
    assert row["contained"], row
