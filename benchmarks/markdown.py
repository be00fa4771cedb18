"""Render a benchmark results file as the Markdown tables BENCHMARKS.md carries.

python benchmarks/markdown.py benchmarks/results-sqlite-1m.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def tables(results: dict[str, Any]) -> str:
    out = [
        f"**{results['backend']}, {results['messages']:,} messages** (largest device: "
        f"{results['device']['messages']:,} messages; the one queried)",
        "",
    ]
    if results["queries"]:
        out += ["| query | p50 ms | p99 ms |", "| --- | ---: | ---: |"]
        out += [
            f"| {name} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} |" for name, r in results["queries"].items()
        ]
        out.append("")
    if results["search"]:
        out += [
            "| keyword | chars | rarity | hits | p50 ms | p99 ms | LIKE scan p50 ms | speed-up |",
            "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for term, r in results["search"].items():
            out.append(
                f"| {term} | {r['chars']} | {r['rarity']} ({r['share_pct']:.2f}%) | "
                f"{r['hits']:,}{'+' if r.get('capped') else ''} | {r['p50_ms']:.2f} | "
                f"{r['p99_ms']:.2f} | {r['like_p50_ms']:,.0f} | {r['speedup']}× |"
            )
        out.append("")
    ingest = {k: v for k, v in results["ingest"].items() if isinstance(v, dict)}
    if ingest:
        out += ["| ingest, 16 connections | req/s | messages/s | p50 ms | p99 ms | errors |",
                "| --- | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
        for name, r in ingest.items():
            out.append(
                f"| {name} | {r['requests_per_s']:,.0f} | {r['messages_per_s']:,.0f} | {r['p50_ms']:.1f} | "
                f"{r['p99_ms']:.1f} | {r['errors'] + r['non_2xx']} |"
            )
        out += ["", f"Single callbacks at **{results['ingest']['single vs http stack']:.0%}** of the HTTP-stack limit. "
                    f"Server peak RSS {results['server_peak_rss_mb']} MB."]  # fmt: skip
    return "\n".join(out)


if __name__ == "__main__":
    for path in sys.argv[1:]:
        print(tables(json.loads(Path(path).read_text(encoding="utf-8"))))
        print()
