"""`make reliability`: run the hardening tests and rewrite docs/RELIABILITY.md with what they found.

Every test of tests/hardening/ (and the hostile-request tests of the server) runs; each records its
figures through `tests.reliability.record`, and pytest's own verdict says whether it held. The page
lists every case, how many times it was tried, and the outcome. The load drill (test_server_load.py,
MODELBUILDER_LOAD_SECONDS=60 unless set) gets a table of its own, set against its target; the page says
how busy the machine was, since other work on it slows the server and the training alike.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ["tests/hardening", "tests/server/test_hostile.py"]
LOAD_SECONDS = "60"  # each loaded phase of the load drill
P95_TARGET_MS = 250.0  # the load drill's targets: the API's p95 with clients on the run pages...
KEPT_TARGET_PCT = 90.0  # ...and the training throughput kept meanwhile
LOAD_COLUMNS = (("clients", "clients"), ("requests", "requests"), ("p50 ms", "p50_ms"), ("p95 ms", "p95_ms"),
                ("event delay p50 / p95 ms", ("event_delay_p50_ms", "event_delay_p95_ms")),
                ("training images/s without / with clients", ("training_images_per_s_without_clients",
                                                               "training_images_per_s_with_clients")),
                ("kept", "training_throughput_kept_pct"), ("server CPU (cores)", "server_cpu_cores"),
                ("clients' CPU (cores)", "clients_cpu_cores"))


def run_tests(log: Path, junit: Path) -> int:
    targets = [t for t in TARGETS if (ROOT / t).exists()]
    env = {"MODELBUILDER_LOAD_SECONDS": LOAD_SECONDS, **os.environ, "MODELBUILDER_RELIABILITY_LOG": str(log)}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", *targets]
    print("$", " ".join(command), flush=True)
    return subprocess.call(command, cwd=ROOT, env=env)


def verdicts(junit: Path) -> dict[str, str]:
    out = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = f"{case.get('classname', '').split('.')[-1]}::{case.get('name')}"
        if case.find("failure") is not None or case.find("error") is not None:
            out[name] = "FAILED"
        elif case.find("skipped") is not None:
            out[name] = "skipped"
        else:
            out[name] = "passed"
    return out


def _cell(figures: dict, key: str | tuple[str, ...]) -> str:
    keys = (key,) if isinstance(key, str) else key
    return " / ".join(str(figures.get(k, "-")) for k in keys) + ("%" if key == "training_throughput_kept_pct" else "")


def load_section(records: list[dict]) -> list[str]:
    """The load drill's rows: every figure in a column, and the targets checked on the portal's row."""
    if not records:
        return []
    lines = ["", "## The API while training fills the CPU", "",
             f"Two runs train on every core (each on a compute of half of them) while 50 clients use the API, "
             f"{records[0]['figures'].get('seconds')} s per phase. Throughput is set against the quiet phases just "
             "before and after each loaded one. The clients run on the same host: their CPU is training's loss too. "
             f"Target on the run pages: p95 under {P95_TARGET_MS:.0f} ms with no errors, and at least "
             f"{KEPT_TARGET_PCT:.0f} % of the training throughput.", "",
             "| clients do | " + " | ".join(name for name, _ in LOAD_COLUMNS) + " | errors |",
             "|---|" + "---:|" * len(LOAD_COLUMNS) + "---|"]
    for r in records:
        f = r["figures"]
        lines.append(f"| {r['case'].split(': ', 1)[-1]} | " + " | ".join(_cell(f, k) for _, k in LOAD_COLUMNS)
                     + f" | {r['outcome']} |")
    portal = next((r["figures"] for r in records if "event_delay_p95_ms" in r["figures"]), None)
    if portal is not None:
        met = portal["p95_ms"] < P95_TARGET_MS and portal["training_throughput_kept_pct"] >= KEPT_TARGET_PCT
        lines += ["", f"Run pages against the target: p95 {portal['p95_ms']} ms, training kept "
                      f"{portal['training_throughput_kept_pct']} %: **{'met' if met else 'not met'}**. "
                      f"Per request, p95: page {portal.get('p95_ms_page')} ms, event stream to its snapshot "
                      f"{portal.get('p95_ms_snapshot')} ms, data report {portal.get('p95_ms_data_report')} ms. "
                      f"Training processes ran at niceness {portal.get('worker_nice')}; the host's load average "
                      f"reached {portal.get('host_load_average_max')} during the drill (its own two runs make 2)."]
    return lines


def render(records: list[dict], tests: dict[str, str], code: int, load: tuple[float, float]) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    passed = sum(v == "passed" for v in tests.values())
    drill = [r for r in records if "training_throughput_kept_pct" in r["figures"]]
    lines = [
        "# Reliability",
        "",
        "Bad inputs, hostile requests and faults, tried on purpose. Regenerated by `make reliability`",
        f"(last run {now} on {platform.machine()} Linux, {os.cpu_count()} cores, Python {platform.python_version()};",
        f"load average {load[0]:.1f} when it started and {load[1]:.1f} when it ended).",
        "",
        f"Tests: {passed} of {len(tests)} passed" + ("" if code == 0 else " — **some failed, see below**") + ".",
        "",
        "| case | tried | outcome | figures |",
        "|---|---:|---|---|",
    ]
    for r in records:
        if r in drill:
            continue
        figures = "; ".join(f"{k.replace('_', ' ')}: {v}" for k, v in r["figures"].items())
        lines.append(f"| {r['case']} | {r['trials']} | {r['outcome']} | {figures} |")
    lines += load_section(drill)
    lines += ["", "## Every test and its verdict", "", "| test | verdict |", "|---|---|"]
    lines += [f"| `{name}` | {verdict} |" for name, verdict in sorted(tests.items())]
    return "\n".join(lines) + "\n"


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        log, junit = Path(tmp) / "figures.jsonl", Path(tmp) / "junit.xml"
        load_before = os.getloadavg()[0]
        code = run_tests(log, junit)
        load = (load_before, os.getloadavg()[0])
        records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        tests = verdicts(junit) if junit.exists() else {}
    target = ROOT / "docs" / "RELIABILITY.md"
    target.write_text(render(records, tests, code, load))
    print(f"wrote {target} ({len(records)} cases, {len(tests)} tests)")
    return code


if __name__ == "__main__":
    sys.exit(main())
