"""bench_fleet's process() with the worker's forked checkpoints: the loop settles the changed models, a forked child
takes their states and packs them; CPU of both (os.wait4 for the child). --old: ModelMonitor.settle without
count_pending (the loop leaves the warm-up numbers to the copy)."""
import sys, os, math, time, gc
sys.path.insert(0,'.')
import bench_fleet as bf
from streamdrift.core.config import MonitorSettings
from streamdrift.core.sketch import StreamSketch
from streamdrift.runtime.statetopic import pack
n_models, n_pred, every = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
if "--old" in sys.argv:
    StreamSketch.count_pending = lambda self: None
gc.set_threshold(*bf.GC_THRESHOLDS)
msgs = bf.stamped(n_pred, n_models)
runs = {}
for m in msgs: runs.setdefault((m.partition, m.topic), []).append(m)
changed = {p: set() for p in range(bf.PARTITIONS)}
engines = bf.engines_for(MonitorSettings(), changed)
proc = settle = child = 0.0
events, next_at = 0, every * n_models
longest = max(len(r) for r in runs.values())
def checkpoint():
    global settle, child
    t0 = time.process_time()
    for e in engines.values(): e.flush()
    for p, e in engines.items(): e.settle(changed[p])
    settle += time.process_time() - t0
    pid = os.fork()
    if pid == 0:
        for p, e in engines.items():
            for st in e.snapshot(changed[p]).models.values(): pack(st, "bench")
        os._exit(0)
    _, status, ru = os.wait4(pid, 0)
    child += ru.ru_utime + ru.ru_stime
    for p in changed: changed[p].clear()
for at in range(0, longest, bf.BATCH_SIZE):
    t0 = time.process_time()
    for p, e in engines.items():
        pr = runs.get((p, bf.PRED), [])[at:at+bf.BATCH_SIZE]; fb = runs.get((p, bf.FB), [])[at:at+bf.BATCH_SIZE]
        e.add(bf.PRED, pr); e.add(bf.FB, fb); e.release(flush=False); events += len(pr) + len(fb)
    proc += time.process_time() - t0
    if events >= next_at:
        while next_at <= events: next_at += every * n_models
        checkpoint()
t0 = time.process_time()
for e in engines.values(): e.release(ended={bf.PRED, bf.FB})
proc += time.process_time() - t0
checkpoint()
n = len(msgs)
print(("old" if "--old" in sys.argv else "new"), n_models, "models", n, "events; us/event: process", round(proc/n*1e6,2), "settle", round(settle/n*1e6,2), "child", round(child/n*1e6,2), "all", round((proc+settle+child)/n*1e6,2))
