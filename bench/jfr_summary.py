"""Summarize a JFR recording: the hottest frames, by self and by total samples.

`python -m bench.jfr_summary FILE.jfr [--top N] [--thread PREFIX]` prints the
frames that appear most often at the top of sampled stacks (self) and
anywhere in them (total), over Java samples (jdk.ExecutionSample) and
samples of threads in native methods (jdk.NativeMethodSample). It reads the
recording with the JDK's `jfr print --json`.
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess

# Top frames of threads that wait rather than work: native samples include them.
IDLE_FRAMES = frozenset({
    "sun/nio/ch/Net.accept", "sun/nio/ch/SocketDispatcher.read0", "sun/nio/ch/EPoll.wait",
    "jdk/internal/misc/Unsafe.park", "java/lang/Object.wait", "java/lang/Thread.sleep",
    "sun/nio/ch/Net.poll", "java/io/FileInputStream.readBytes",
})


def frame_name(frame: dict) -> str:
    method = frame["method"]
    return f"{method['type']['name']}.{method['name']}"


def load_samples(path: str, thread_prefix: str | None = None) -> list[tuple[str, list[str]]]:
    """Return (thread, stack) of the recording's working samples, innermost frame first.

    Samples whose top frame is in IDLE_FRAMES are left out.
    """
    output = subprocess.run(
        ["jfr", "print", "--json", "--stack-depth", "64",
         "--events", "jdk.ExecutionSample,jdk.NativeMethodSample", path],
        check=True, capture_output=True, text=True,
    ).stdout
    stacks = []
    for event in json.loads(output)["recording"]["events"]:
        values = event["values"]
        thread = values.get("sampledThread") or {}
        name = thread.get("javaName") or thread.get("osName") or ""
        if thread_prefix and not name.startswith(thread_prefix):
            continue
        trace = values.get("stackTrace")
        if not trace:
            continue
        frames = [frame_name(frame) for frame in trace["frames"]]
        if frames and frames[0] not in IDLE_FRAMES:
            stacks.append((name, frames))
    return stacks


def thread_group(name: str) -> str:
    """Name a thread without its subtask and attempt numbers, so subtasks add up."""
    for marker in (" (", "#"):
        if marker in name:
            name = name.split(marker, 1)[0]
    return name.rstrip("-0123456789")


def summarize(samples: list[tuple[str, list[str]]], top: int = 15) -> dict:
    """Return the `top` frames by self and by total share, and the busiest threads."""
    self_counts: collections.Counter = collections.Counter()
    total_counts: collections.Counter = collections.Counter()
    threads: collections.Counter = collections.Counter(thread_group(name) for name, _ in samples)
    stacks = [stack for _, stack in samples]
    for stack in stacks:
        if stack:
            self_counts[stack[0]] += 1
        for frame in set(stack):
            total_counts[frame] += 1
    count = len(stacks) or 1
    return {
        "samples": len(stacks),
        "self": [(frame, hits / count) for frame, hits in self_counts.most_common(top)],
        "total": [(frame, hits / count) for frame, hits in total_counts.most_common(top)],
        "threads": [(name, hits / count) for name, hits in threads.most_common(8)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.jfr_summary")
    parser.add_argument("recording")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--thread", help="only threads whose name starts with this")
    args = parser.parse_args()
    summary = summarize(load_samples(args.recording, args.thread), args.top)
    print(f"{summary['samples']} samples")
    for kind in ("threads", "self", "total"):
        print(f"-- top {kind}" if kind == "threads" else f"-- top frames by {kind} samples")
        for frame, share in summary[kind]:
            print(f"{share * 100:6.1f} %  {frame}")


if __name__ == "__main__":
    main()
