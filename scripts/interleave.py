#!/usr/bin/env python3
"""Time commands round-robin: each round runs every command once, in turn, so drift on a
shared, noisy machine lands on all of them alike (hyperfine runs one command's batch after
another's, and a busy minute then favours whichever ran in the quiet one). Prints each
command's median wall time and its ratio to the first command's, or with --json the figures.

usage: interleave.py [--runs N] [--warmup N] [--json] [--name NAME]... -- CMD [CMD ...]
Each CMD is one shell-quoted string; stdout and stderr go to /dev/null; a command that exits
otherwise than expected (--exit, default 0) stops the run: a benchmark of a command that
failed by accident measures nothing."""
import argparse, json, os, shlex, shutil, statistics, sys, time

ap = argparse.ArgumentParser()
ap.add_argument("--runs", type=int, default=500)
ap.add_argument("--warmup", type=int, default=20)
ap.add_argument("--json", action="store_true")
ap.add_argument("--name", action="append", default=[])
ap.add_argument("--exit", type=int, action="append", default=[],
                help="an exit status that counts as done (repeatable; default 0 only)")
ap.add_argument("commands", nargs="+")
a = ap.parse_args()
cmds = []
for c in a.commands:
    argv = shlex.split(c)
    argv[0] = shutil.which(argv[0]) or argv[0]
    cmds.append(argv)
names = a.name + [c for c in a.commands[len(a.name):]]
null = os.open(os.devnull, os.O_WRONLY)
actions = [(os.POSIX_SPAWN_DUP2, null, 1), (os.POSIX_SPAWN_DUP2, null, 2)]
times = [[] for _ in cmds]
for r in range(a.warmup + a.runs):
    for i, argv in enumerate(cmds):
        t = time.perf_counter_ns()
        pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=actions)
        _, status = os.waitpid(pid, 0)
        elapsed = time.perf_counter_ns() - t
        if os.waitstatus_to_exitcode(status) not in (a.exit or [0]):
            sys.exit(f"interleave.py: `{a.commands[i]}` exited with {os.waitstatus_to_exitcode(status)}")
        if r >= a.warmup:
            times[i].append(elapsed / 1e6)
medians = [statistics.median(t) for t in times]
if a.json:
    print(json.dumps([{"name": n, "median_ms": m, "ratio": m / medians[0]} for n, m in zip(names, medians)]))
else:
    for n, m in zip(names, medians):
        print(f"{m:8.3f} ms  {m / medians[0]:5.2f}x  {n}")
