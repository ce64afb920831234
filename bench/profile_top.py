"""Summarise a py-spy raw profile (collapsed stacks): `python -m bench.profile_top FILE [N]`
prints the functions with the most samples, on their own and with what they call."""
from __future__ import annotations

import collections
import sys


def summarise(path: str, top: int = 30) -> str:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in open(path, encoding="utf-8"):
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack:
            continue
        samples = int(count)
        total += samples
        frames = stack.split(";")
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    lines = [f"{total} samples", "-- own"]
    lines += [f"{100 * n / total:5.1f}% {frame}" for frame, n in own.most_common(top)]
    lines.append("-- with callees")
    lines += [f"{100 * n / total:5.1f}% {frame}" for frame, n in inclusive.most_common(top)]
    return "\n".join(lines)


if __name__ == "__main__":
    print(summarise(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 30))
