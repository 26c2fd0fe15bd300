"""How fast the offline preview is, and how it grows with the inventory.

    python -m tools.bench [--stacks dev staging prod] [--models 1 10 50 100]

For every scenario (each stack, and generated inventories with N models derived from
prod by `tools.synthetic_inventory`) it runs the offline preview WITH the policy pack
exactly as a user does (`python -m tools.preview --stack S [--stack-file F] --quiet`, in
a subprocess) and measures:
- wall: seconds from start to exit (time.perf_counter around the subprocess);
- peak MiB: the largest resident set of that preview's process tree (os.wait4 reports the
  child's peak including the children it waited for, such as the policy pack);
then, in a second subprocess, the phases on their own: program run under the mock engine,
policy pack start-up, and policy analysis (Analyze per resource plus AnalyzeStack) divided
by the number of resources.

Targets (on 2 cores): prod preview with policies under 10 s; growth linear in resources
(least-squares s/resource over the generated scenarios, and the ratio of marginal
per-resource time at 100 vs 10 models, near 1); policy analysis under 5 ms per resource.
The machine (cores, CPU model, Python, load average) is printed with the table: figures
from a busy machine are not comparable with figures from an idle one.

Exit status 0 when every target is met, 1 when one is missed (the table says which).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from tools import stack_files
from tools.stack_files import PROJECT_DIR

PROD_TARGET_S = 10.0
POLICY_TARGET_MS = 5.0
LINEAR_RATIO_LIMIT = 1.25  # marginal per-resource time at 100 vs 10 models
# Every committed stack file, so a new stack is timed without editing this list.
DEFAULT_STACKS = stack_files.committed_stacks()
DEFAULT_MODELS = (1, 10, 50, 100)


@dataclass(frozen=True)
class Scenario:
    label: str
    stack: str
    stack_file: Optional[Path]  # None: the committed stacks/Pulumi.<stack>.yaml
    models: int


@dataclass(frozen=True)
class Result:
    scenario: Scenario
    resources: int
    wall_s: float
    peak_mib: float
    exit_code: int
    program_s: float
    pack_start_s: float
    analysis_s: float
    diagnostics: int

    @property
    def policy_ms_per_resource(self) -> float:
        return self.analysis_s * 1000 / self.resources if self.resources else 0.0


# ------------------------------------------------------------------------ machine

def machine() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor() or "unknown"
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "n/a"
    return {"cores": str(usable), "cpu": model,
            "python": f"{platform.python_implementation()} {platform.python_version()}",
            "os": f"{platform.system()} {platform.release()}", "load": load}


# ------------------------------------------------------------------------ measuring

def _measured_run(command: list[str], cwd: Path) -> tuple[float, float, int]:
    """Run `command` and return (wall s, peak MiB of its process tree, exit code)."""
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert process.stderr is not None
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    process.stderr.close()
    if process.returncode not in (0, 1):  # 1: mandatory violations, still a full preview
        raise RuntimeError(f"{' '.join(command)} failed (exit {process.returncode}):\n"
                           f"{stderr.decode(errors='replace')[-3000:]}")
    # Linux reports ru_maxrss in KiB, macOS in bytes.
    peak = usage.ru_maxrss / (1024 * 1024) if sys.platform == "darwin" else usage.ru_maxrss / 1024
    return wall, peak, process.returncode


def _preview_command(scenario: Scenario) -> list[str]:
    command = [sys.executable, "-m", "tools.preview", "--stack", scenario.stack, "--quiet"]
    if scenario.stack_file is not None:
        command += ["--stack-file", str(scenario.stack_file)]
    return command


def run_scenario(scenario: Scenario) -> Result:
    wall, peak, code = _measured_run(_preview_command(scenario), PROJECT_DIR)
    phases_command = [sys.executable, "-m", "tools.bench", "--phases", scenario.stack]
    if scenario.stack_file is not None:
        phases_command += ["--stack-file", str(scenario.stack_file)]
    result = subprocess.run(phases_command, cwd=PROJECT_DIR, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"phase timing of {scenario.label} failed:\n{result.stderr[-3000:]}")
    phases = json.loads(result.stdout.strip().splitlines()[-1])
    return Result(scenario=scenario, resources=phases["resources"], wall_s=wall, peak_mib=peak,
                  exit_code=code, program_s=phases["program_s"], pack_start_s=phases["pack_start_s"],
                  analysis_s=phases["analysis_s"], diagnostics=phases["diagnostics"])


def phases(stack: str, stack_file: Optional[Path]) -> dict[str, float]:
    """Time the preview's phases in this process (used by `--phases`, in a subprocess)."""
    from tools import analyzer, preview

    start = time.perf_counter()
    loaded, run = preview.run_program(stack, stack_file)
    program = time.perf_counter() - start
    environment = (loaded.config.get("deepseek-serving:inventory") or {}).get("environment", stack)
    config = analyzer.config_path(environment)
    start = time.perf_counter()
    with analyzer.PolicyPackProcess() as pack:
        started = time.perf_counter()
        found = pack.analyze(run.registrations, config if config.is_file() else None)
        analysed = time.perf_counter()
    return {"resources": len(run.registrations), "program_s": program, "pack_start_s": started - start,
            "analysis_s": analysed - started, "diagnostics": len(found)}


# ------------------------------------------------------------------------ reporting (pure)

def fit(points: Sequence[tuple[float, float]]) -> tuple[float, float, float]:
    """Least squares y = a + b x: (intercept a, slope b, r squared)."""
    n = len(points)
    if n < 2:
        return (points[0][1] if points else 0.0), 0.0, 1.0
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in points)
    slope = sxy / sxx if sxx else 0.0
    intercept = mean_y - slope * mean_x
    ss_tot = sum((y - mean_y) ** 2 for _, y in points)
    ss_res = sum((y - intercept - slope * x) ** 2 for x, y in points)
    return intercept, slope, (1 - ss_res / ss_tot) if ss_tot else 1.0


def marginal_ratio(results: Sequence[Result], high: int = 100, low: int = 10) -> Optional[float]:
    """Per-resource time above the 1-model baseline at `high` models over that at `low`."""
    by_models = {r.scenario.models: r for r in results if r.scenario.stack.startswith("bench-")}
    base, a, b = by_models.get(1), by_models.get(low), by_models.get(high)
    if not (base and a and b) or a.resources == base.resources or b.resources == base.resources:
        return None
    per_low = (a.wall_s - base.wall_s) / (a.resources - base.resources)
    per_high = (b.wall_s - base.wall_s) / (b.resources - base.resources)
    return per_high / per_low if per_low > 0 else None


def render(results: Sequence[Result], info: dict[str, str]) -> tuple[str, bool]:
    """The table, the growth figures and the target verdicts; (text, all targets met)."""
    lines = [f"Machine: {info['cores']} cores, {info['cpu']}, {info['python']}, {info['os']}; "
             f"load average at start {info['load']}", ""]
    header = ("scenario", "models", "resources", "wall s", "peak MiB", "program s", "pack start s",
              "policy ms/resource")
    rows = [(r.scenario.label, str(r.scenario.models), str(r.resources), f"{r.wall_s:.2f}",
             f"{r.peak_mib:.0f}", f"{r.program_s:.2f}", f"{r.pack_start_s:.2f}",
             f"{r.policy_ms_per_resource:.2f}") for r in results]
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines.append("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        lines.append("| " + " | ".join(c.rjust(w) if i else c.ljust(w)
                                        for i, (c, w) in enumerate(zip(row, widths))) + " |")
    lines.append("")
    ok = True
    prod = [r for r in results if r.scenario.stack == "prod"]
    if prod:
        met = prod[0].wall_s < PROD_TARGET_S
        ok &= met
        lines.append(f"{'PASS' if met else 'MISS'}  prod preview with policies: {prod[0].wall_s:.2f} s "
                     f"(target < {PROD_TARGET_S:.0f} s)")
    worst = max(results, key=lambda r: r.policy_ms_per_resource, default=None)
    if worst is not None:
        met = worst.policy_ms_per_resource < POLICY_TARGET_MS
        ok &= met
        lines.append(f"{'PASS' if met else 'MISS'}  policy analysis: at most {worst.policy_ms_per_resource:.2f} "
                     f"ms/resource ({worst.scenario.label}; target < {POLICY_TARGET_MS:.0f} ms)")
    generated = [r for r in results if r.scenario.stack.startswith("bench-")]
    if len(generated) >= 2:
        intercept, slope, r2 = fit([(r.resources, r.wall_s) for r in generated])
        lines.append(f"      growth: wall ≈ {intercept:.2f} s + {slope * 1000:.2f} ms × resources "
                     f"(least squares over {len(generated)} generated inventories, r² {r2:.3f})")
        ratio = marginal_ratio(results)
        if ratio is not None:
            met = ratio <= LINEAR_RATIO_LIMIT
            ok &= met
            lines.append(f"{'PASS' if met else 'MISS'}  linear growth: marginal per-resource time at 100 "
                         f"vs 10 models is {ratio:.2f}x (target <= {LINEAR_RATIO_LIMIT:.2f}x)")
    return "\n".join(lines) + "\n", ok


# ------------------------------------------------------------------------ CLI

def scenarios(stacks: Sequence[str], models: Sequence[int], directory: Path) -> list[Scenario]:
    from tools import synthetic_inventory

    found = [Scenario(stack, stack, None, _model_count(stack)) for stack in stacks]
    for count in models:
        path = synthetic_inventory.write_stack_file(count, directory)
        found.append(Scenario(f"generated {count}", synthetic_inventory.stack_name(count), path, count))
    return found


def _model_count(stack: str) -> int:
    from tools import stack_files

    inventory = stack_files.load(stack).config.get("deepseek-serving:inventory") or {}
    return len(inventory.get("models") or [])


README_MARKERS = re.compile(r"(<!-- bench:start[^>]*-->\n)(.*?)(<!-- bench:end -->)", re.S)


def readme_section(text: str, info: dict[str, str], when: str) -> str:
    """What the README quotes: the machine and date, the table, the verdicts."""
    machine_line, _, rest = text.partition("\n\n")
    table, _, verdicts = rest.partition("\n\n")
    return (f"Offline preview with the policy pack, each run in its own process, measured on {when} "
            f"with `make bench README=1` on this project's development machine "
            f"({machine_line.removeprefix('Machine: ')}).\n\n{table}\n\n```\n{verdicts.rstrip()}\n```\n")


def write_readme(path: Path, section: str) -> None:
    text = path.read_text()
    if not README_MARKERS.search(text):
        raise SystemExit(f"{path} has no bench markers")
    path.write_text(README_MARKERS.sub(lambda m: m.group(1) + section + m.group(3), text))


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stacks", nargs="*", default=list(DEFAULT_STACKS), help="committed stacks to time")
    parser.add_argument("--models", nargs="*", type=int, default=list(DEFAULT_MODELS),
                        help="model counts of generated inventories")
    parser.add_argument("--readme", action="store_true",
                        help="also write the figures into README.md (Preview performance)")
    parser.add_argument("--phases", metavar="STACK", help=argparse.SUPPRESS)
    parser.add_argument("--stack-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.phases:
        print(json.dumps(phases(args.phases, args.stack_file)))
        return 0
    info = machine()
    results = []
    with tempfile.TemporaryDirectory(prefix="deepseek-bench-") as scratch:
        for scenario in scenarios(args.stacks, args.models, Path(scratch)):
            print(f"… {scenario.label}", file=sys.stderr, flush=True)
            results.append(run_scenario(scenario))
    text, ok = render(results, info)
    sys.stdout.write(text)
    if args.readme:
        write_readme(PROJECT_DIR / "README.md", readme_section(text, info, datetime.date.today().isoformat()))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
