"""``lfr.gc_freeze``: start-up's objects leave the collector's generations, later garbage is
still collected. Run in a child interpreter: freezing pytest's own heap would keep every
test's objects for the rest of the run."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from bench.node_processes import REPO_ROOT

CHILD = textwrap.dedent("""
    import gc, weakref
    from lfr.gc_freeze import freeze_after_start

    class Node:
        pass

    class Later:
        pass

    started = Node()
    started.self = started              # a cycle alive at start-up
    frozen = freeze_after_start()
    assert frozen == gc.get_freeze_count() > 1000, frozen
    assert not any(obj is started for generation in range(3)
                   for obj in gc.get_objects(generation)), "start-up object still scanned"
    garbage = Later()
    garbage.self = garbage              # a cycle made afterwards, then dropped
    gone = weakref.ref(garbage)
    del garbage
    gc.collect()
    assert gone() is None, "garbage made after the freeze was not collected"
    print("ok", frozen)
""")


def test_start_up_objects_are_frozen_and_later_garbage_still_collected() -> None:
    result = subprocess.run([sys.executable, "-c", CHILD], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok ")
