"""scripts/bench-sidecar-footprint --callgrind-order: reading callgrind dumps into the symbol
ordering file of scripts/build-sidecar (docs/build-features.md, "The sidecar build")."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def harness():
    path = os.path.join(ROOT, "scripts", "bench-sidecar-footprint")
    loader = importlib.machinery.SourceFileLoader("bench_sidecar_footprint", path)
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


# The shape callgrind 3.19 writes with --compress-strings=no --compress-pos=no
# --demangle=no: the object, the file and the function of each cost line; a call's
# `calls=` line followed by the call's inclusive cost (not the caller's own).
DUMP = """\
# callgrind format
version: 1
creator: callgrind-3.19.0
pid: 4313
cmd:  /x/target/release-sidecar/oxcol --config c.yaml
part: 2

positions: line
events: Ir
summary: 5000

ob=/usr/lib/x86_64-linux-gnu/libc.so.6
fl=./nptl/pthread_create.c
fn=start_thread
cob=/x/target/release-sidecar/oxcol
cfi=/rustc/library/std/src/sys/thread/unix.rs
cfn=_RNvthread_start
calls=0 108
442 4000

ob=/x/target/release-sidecar/oxcol
fl=/rustc/library/std/src/sys/thread/unix.rs
fn=_RNvthread_start
108 7
cfn=_ZN5oxcol6scrape17h0123456789abcdefE
calls=3 20
110 3900
fl=receivers/src/smaps/mod.rs
fn=_ZN5oxcol6scrape17h0123456789abcdefE
20 300
21 600
cob=/usr/lib/x86_64-linux-gnu/libc.so.6
cfn=memcpy
calls=10 0
22 90
fn=_ZN5oxcol4cold17hfedcba9876543210E
5 1

ob=/usr/lib/x86_64-linux-gnu/libc.so.6
fl=memcpy.S
fn=memcpy
0 90
"""


def test_callgrind_functions_keeps_the_executables_own_costs(tmp_path):
    dump = tmp_path / "run.callgrind.2"
    dump.write_text(DUMP)
    costs = harness().callgrind_functions(str(dump))
    # Only functions of the object named oxcol; a call's inclusive cost (3900, 90) is not
    # the caller's own; libc's start_thread and memcpy are not oxcol's.
    assert costs == {
        "_RNvthread_start": 7,
        "_ZN5oxcol6scrape17h0123456789abcdefE": 900,
        "_ZN5oxcol4cold17hfedcba9876543210E": 1,
    }


def test_order_puts_the_steady_state_first_and_start_up_after_without_repeats(tmp_path):
    out = tmp_path / "order.txt"
    steady = {"a": 5, "b": 50, "c": 1}
    startup = {"b": 1000, "d": 3, "e": 30}
    n_steady, n_startup = harness().write_order(str(out), steady, startup, "test")
    names = [line for line in out.read_text().splitlines() if not line.startswith("#")]
    assert (n_steady, n_startup) == (3, 2)
    # Most instructions first within each part; a function of both parts is listed once,
    # in the steady part.
    assert names == ["b", "a", "c", "e", "d"]
