#!/usr/bin/python3
"""Print a search's resident memory at every 4th iteration's end, from the
samples bench/search-memory/run.sh wrote (OUT/rss) and the run's log."""
import datetime
import json
import sys

out = sys.argv[1]
rss = []
for line in open(out + "/rss"):
    f = line.split()
    if len(f) >= 3:
        rss.append((float(f[0]), int(f[1]) / 1024, int(f[2]) / 1024))
t0 = rss[0][0]


def when(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() - t0


cands, ends = 0, []
for line in open(out + "/exp/search/log.jsonl"):
    e = json.loads(line)
    msg = e.get("message", "")
    if msg == "my_pruning: candidate ran":
        cands += 1
    elif msg == "my_pruning: iteration done":
        ends.append((when(e["time"]), cands))
print(f"{len(ends)} iterations, {cands} candidates")
print("| iteration | seconds | candidates so far | VmRSS | RssAnon |")
print("| --- | --- | --- | --- | --- |")
for i, (t, n) in enumerate(ends):
    if i % 4 and i != len(ends) - 1:
        continue
    s = min(rss, key=lambda r: abs(r[0] - t0 - t))
    print(f"| {i + 1} | {t:.1f} | {n} | {s[1]:.0f} MB | {s[2]:.0f} MB |")
print(f"peak VmRSS {max(r[1] for r in rss):.0f} MB")
gcs = [l for l in open(out + "/stderr") if l.startswith("gc ")]
if gcs:
    f = gcs[-1].split(",")
    print(f"Go heap at the last GC: {f[2].strip()} (at its start, end, live), {f[3].strip()}")
