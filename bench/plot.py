#!/usr/bin/env python3
"""Draws the cri figure of a crisp-bench JSON file: each CRI operation's latency
distribution, crisp beside containerd (box = p25..p75, whiskers = p5..p95, dots = the
rest), on a log scale so that 1 ms and 1 s fit on one chart."""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(source, target):
    with open(source) as f:
        results = json.load(f)
    latency = results["cri"]["latency"]
    names = results["cri"].get("operations", list(latency))
    fig, ax = plt.subplots(figsize=(max(8, 1.1 * len(names)), 5.5))
    positions_a = [i * 3 for i in range(len(names))]
    positions_b = [p + 1 for p in positions_a]
    style = dict(widths=0.8, whis=(5, 95), patch_artist=True, flierprops=dict(markersize=2))
    a = ax.boxplot([latency[n]["crisp_ms"] for n in names], positions=positions_a, **style)
    b = ax.boxplot([latency[n]["containerd_ms"] for n in names], positions=positions_b, **style)
    for box in a["boxes"]:
        box.set_facecolor("#4c9be8")
    for box in b["boxes"]:
        box.set_facecolor("#f0a04b")
    ax.set_yscale("log")
    ax.set_ylabel("latency (ms, log scale)")
    ax.set_xticks([p + 0.5 for p in positions_a])
    ax.set_xticklabels(names, rotation=35, ha="right")
    pods, rounds = results["cri"]["pods"], results["cri"]["rounds"]
    ax.set_title(f"CRI latency: crisp vs containerd 1.6 ({pods} pods x {rounds} rounds, same machine, same client)")
    ax.legend([a["boxes"][0], b["boxes"][0]], ["crisp", "containerd"], loc="upper left")
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(target, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
