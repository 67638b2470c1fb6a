#!/usr/bin/env python3
"""docs/scaling.md's projections, computed from its measured figures (edit them here to project
from a run of launch/scaling-measure.sh on another machine): images/s and efficiency for 1-64 nodes
and the node count from which the allreduce outweighs the compute, as markdown tables."""
import math

GRADIENT_BYTES = 1_152_675 * 4
LATENCY_S = 25e-6           # per message: assumed (this machine's kernel has no netem)
LINK_EFFICIENCY = 0.60      # measured at 1 Gbit/s, the one link whose shaping was the limit
# Measured: ms per step on one core, by images per rank (vae bench --threads 1 --batch P).
COMPUTE_MS = {64: 119.8, 32: 55.5, 16: 25.2, 8: 14.8, 4: 8.1, 2: 6.6, 1: 4.0}
NODES = [1, 2, 4, 8, 16, 32, 64]
LINKS = {"1 Gbit/s": 1e9, "10 Gbit/s": 10e9, "25 Gbit/s": 25e9}


def compute_s(piece):
    # Pieces above 64 images: proportional to the measured 64.
    return COMPUTE_MS.get(piece, COMPUTE_MS[64] * piece / 64) / 1e3


def allreduce_s(nodes, bits_per_s):
    # Recursive doubling (what vae train's allreduce does, for the same pairwise sums at every rank
    # count): log2(N) rounds, each exchanging the whole gradient with one partner.
    bytes_per_s = LINK_EFFICIENCY * bits_per_s / 8
    return math.log2(nodes) * (GRADIENT_BYTES / bytes_per_s + LATENCY_S)


def main():
    crossovers = {}
    for batch in [64, 256, 1024]:
        print(f"\nGlobal batch {batch}:\n")
        print("| nodes | " + " | ".join(map(str, NODES)) + " |")
        print("| --- " * (len(NODES) + 1) + "|")
        for name, rate in LINKS.items():
            one_node = batch / compute_s(batch)
            cells = []
            for nodes in NODES:
                piece = batch // nodes
                communication = allreduce_s(nodes, rate)
                rate_now = batch / (compute_s(piece) + communication)
                if nodes == 1:
                    cells.append(f"{rate_now:,.0f}")
                    continue
                dominated = communication > compute_s(piece)
                if dominated:
                    crossovers.setdefault((batch, name), nodes)
                cells.append(f"{rate_now:,.0f} ({100 * rate_now / (nodes * one_node):.0f}%)" + (" comm" if dominated else ""))
            print(f"| {name} | " + " | ".join(cells) + " |")
    print("\n| global batch | " + " | ".join(LINKS) + " |")
    print("| --- " * (len(LINKS) + 1) + "|")
    for batch in [64, 256, 1024]:
        cells = [f"{crossovers[(batch, name)]} nodes" if (batch, name) in crossovers else "beyond 64" for name in LINKS]
        print(f"| {batch} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
