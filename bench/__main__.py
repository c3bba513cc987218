"""Every benchmark in one sitting: ``.venv/bin/python -m bench [--quick] [--no-jasmin]``.

Order: Jasmin first (its end-to-end rate is the target of (d)), then (d) end to end,
(a) accept, (b) webhooks, (c) dispatch, (h) event delivery, (i) retention's walk over a
backlog of a million old messages (``--rows`` is not passed to it: there it means the
backlog's size). ``--quick`` is a smoke test of
the harness (small counts, no filler rows); a full run adds 10k and 1M filler rows to
(a)-(c) ((h) runs with none unless ``--rows`` says). Results are also written as JSON to
``--out`` (default ``bench/results/latest.json``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench import accept, dispatch, e2e, events, jasmin, retention, webhooks
from bench.common import REPO, Report, machine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke test")
    parser.add_argument("--no-jasmin", action="store_true", help="skip the Jasmin peer run")
    parser.add_argument("-n", type=int, default=None, help="requests/messages per run")
    parser.add_argument("--rows", default=None, help="filler rows, e.g. 0,10000,1000000")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "latest.json")
    args = parser.parse_args(argv)
    common: list[str] = ["--quick"] if args.quick else []
    if args.n:
        common += ["-n", str(args.n)]
    if args.rows is not None:
        common += ["--rows", args.rows]
    header = machine()
    reports: list[Report] = []
    jasmin_e2e = None
    if not args.no_jasmin:
        peer = jasmin.run(["--quick"] if args.quick else [])
        reports.append(peer)
        jasmin_e2e = peer.data.get("jasmin", {}).get("e2e_rate")
    # End to end right after Jasmin: the comparison is the one most sensitive to the
    # machine's load changing during the sitting.
    e2e_args = (["--quick"] if args.quick else []) + (["-n", str(args.n)] if args.n else [])
    reports.append(e2e.run(e2e_args, jasmin_e2e=jasmin_e2e))
    reports.append(accept.run(common))
    reports.append(webhooks.run(common))
    reports.append(dispatch.run([*common, "--engines", "postgres"]))
    reports.append(events.run([*common, "--engines", "postgres"]))
    reports.append(retention.run(["--quick"] if args.quick else []))
    print(f"\n==== summary ({header})")
    for report in reports:
        for check in report.checks:
            print(check.line())
    passed = sum(c.passed for r in reports for c in r.checks)
    total = sum(len(r.checks) for r in reports)
    print(f"==== {passed}/{total} PASS")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "machine": header,
                "reports": [
                    {
                        "title": r.title,
                        "lines": r.lines,
                        "checks": [{"line": c.line(), "passed": c.passed} for c in r.checks],
                        "data": r.data,
                    }
                    for r in reports
                ],
            },
            indent=2,
            default=str,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
