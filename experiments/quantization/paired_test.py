#!/usr/bin/env python3
"""Clip-by-clip comparison of two models scored on the same splits (exact McNemar test).

Each model's predictions come from `nas eval ... --predictions FILE` (one CSV per split:
index,truth,predicted); give the files of model A and of model B in the same split order.
Only the clips on which the two disagree about correctness carry information: b = A right and
B wrong, c = A wrong and B right. Under "equally accurate" b ~ Binomial(b + c, 1/2); the
two-sided exact p-value says how surprising the split of b + c is.

usage: paired_test.py --a A_train.csv A_valid.csv ... --b B_train.csv B_valid.csv ...
"""
import argparse
import csv
import math
import sys


def read(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or set(rows[0]) != {"index", "truth", "predicted"}:
        sys.exit(f"{path}: expected the columns index,truth,predicted of `nas eval --predictions`")
    return [(r["index"], r["truth"], r["predicted"]) for r in rows]


def exact_mcnemar(b, c):
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2**n
    return min(1.0, 2 * tail)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--a", nargs="+", required=True, help="model A's prediction files")
    p.add_argument("--b", nargs="+", required=True, help="model B's prediction files, same splits")
    args = p.parse_args()
    if len(args.a) != len(args.b):
        sys.exit(f"{len(args.a)} files for A but {len(args.b)} for B")
    n = right_a = right_b = b = c = same = 0
    for fa, fb in zip(args.a, args.b):
        ra, rb = read(fa), read(fb)
        if [(i, t) for i, t, _ in ra] != [(i, t) for i, t, _ in rb]:
            sys.exit(f"{fa} and {fb} do not list the same clips with the same labels")
        for (_, t, pa), (_, _, pb) in zip(ra, rb):
            ok_a, ok_b = pa == t, pb == t
            n += 1
            right_a += ok_a
            right_b += ok_b
            b += ok_a and not ok_b
            c += ok_b and not ok_a
            same += pa == pb
    print(f"clips {n}: A {right_a} right ({100 * right_a / n:.2f} %), B {right_b} ({100 * right_b / n:.2f} %)")
    print(f"same prediction on {same} clips ({100 * same / n:.2f} %)")
    print(f"A right where B is wrong: {b}; B right where A is wrong: {c}")
    print(f"exact McNemar two-sided p = {exact_mcnemar(b, c):.3g}")


if __name__ == "__main__":
    main()
