#!/usr/bin/env python3
"""One line per ranking from `movrek eval --json` output or bench/peers/rank.py output.

    summary.py PREFIX FILE
"""

import json
import sys


def line(prefix, name, r, chosen, extra=""):
    return (
        f"{prefix}{name:<18} NDCG@10 {r['ndcg']:.4f}  P@20 {r['precision']:.4f}  "
        f"R@20 {r['recall']:.4f}  coverage {r['coverage']:.4f}  users {r['users_scored']}  "
        f"chosen {chosen}{extra}"
    )


def main():
    prefix, path = sys.argv[1], sys.argv[2]
    with open(path) as f:
        text = f.read()
    try:
        report = json.loads(text)
    except json.JSONDecodeError:
        report = None
    if isinstance(report, dict) and "ranking" in report:
        validation = report["served_model"].get("validation") or {}
        for q in report["ranking"]:
            chosen = validation.get("chosen") if q["ranker"] == "served" else "-"
            print(line(prefix, q["ranker"], q, chosen))
        return
    for raw in text.splitlines():
        r = json.loads(raw)
        print(line(prefix, r["ranker"], r, r["params"], f"  {r['seconds']:.0f} s"))


if __name__ == "__main__":
    main()
