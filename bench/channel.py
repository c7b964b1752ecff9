"""Records per second through the record channel of the ML cluster, with baselines.

`python -m bench.channel` sends census rows (tuples of ints and strings)
three ways in one run and writes the section "Record channel of the ML
cluster" of docs/benchmarks.md:

- channel: `ChannelWriter` in this process, `ChannelReader` in a child
  process that reads every record, as between a Flink operator and its node;
- baseline, queue.Queue: the same frames handed between two threads of one
  process, with no serialization and no process boundary;
- baseline, multiprocessing.Pipe: the same frames pickled by
  `Connection.send` to a child process.

Each figure is the median of `--repeats` runs.
"""

from __future__ import annotations

import argparse
import multiprocessing
import queue
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench._sections import load_average, machine_rows, write_section
from pyscoring import census
from pyscoring.cluster.channel import ChannelWriter
from pyscoring.cluster.job import row_to_record

ROOT = Path(__file__).resolve().parents[1]
HEADING = "Record channel of the ML cluster"

_READER = """
import sys, time
from pyscoring.cluster.channel import ChannelReader
reader = ChannelReader(sys.stdin.buffer, capacity_records=int(sys.argv[1]))
count = sum(len(frame) for frame in reader.frames())
print(count, time.time(), flush=True)
"""


def load_records(count: int) -> list[tuple]:
    rows = []
    with open(ROOT / "data" / "adult" / "adult.data", encoding="utf-8") as file:
        for line in file:
            row = census.parse_line(line)
            if row is not None:
                rows.append(row_to_record(row))
    return [rows[index % len(rows)] for index in range(count)]


def frames_of(records: list[tuple], frame_records: int) -> list[list[tuple]]:
    return [records[start:start + frame_records]
            for start in range(0, len(records), frame_records)]


def run_channel(records: list[tuple], frame_records: int, capacity: int) -> float:
    child = subprocess.Popen([sys.executable, "-c", _READER, str(capacity)], cwd=ROOT,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=False)
    time.sleep(1.0)  # let the child import before the clock starts
    started = time.time()
    writer = ChannelWriter(child.stdin, frame_records=frame_records)
    for record in records:
        writer.write(record)
    writer.close()
    output = child.stdout.read().decode().split()
    child.wait()
    count, finished = int(output[0]), float(output[1])
    assert count == len(records), f"the reader got {count} of {len(records)} records"
    return len(records) / (finished - started)


def run_queue(records: list[tuple], frame_records: int, capacity: int) -> float:
    frames = queue.Queue(maxsize=max(1, capacity // frame_records))
    received = []

    def consume():
        count = 0
        while True:
            frame = frames.get()
            if frame is None:
                break
            count += len(frame)
        received.append(count)

    thread = threading.Thread(target=consume)
    thread.start()
    started = time.time()
    frame = []
    for record in records:
        frame.append(record)
        if len(frame) == frame_records:
            frames.put(frame)
            frame = []
    if frame:
        frames.put(frame)
    frames.put(None)
    thread.join()
    assert received == [len(records)]
    return len(records) / (time.time() - started)


def _pipe_reader(connection, done) -> None:
    count = 0
    while True:
        frame = connection.recv()
        if frame is None:
            break
        count += len(frame)
    done.send((count, time.time()))


def run_pipe(records: list[tuple], frame_records: int, capacity: int) -> float:
    del capacity
    reader_end, writer_end = multiprocessing.Pipe(duplex=False)
    done_reader, done_writer = multiprocessing.Pipe(duplex=False)
    child = multiprocessing.get_context("fork").Process(
        target=_pipe_reader, args=(reader_end, done_writer))
    child.start()
    started = time.time()
    frame = []
    for record in records:
        frame.append(record)
        if len(frame) == frame_records:
            writer_end.send(frame)
            frame = []
    if frame:
        writer_end.send(frame)
    writer_end.send(None)
    count, finished = done_reader.recv()
    child.join()
    assert count == len(records)
    return len(records) / (finished - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=300_000, help="records per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per variant")
    parser.add_argument("--frame-records", type=int, default=256,
                        help="records per frame (train.channel-frame-records)")
    parser.add_argument("--capacity", type=int, default=4096,
                        help="records the reader buffers (train.channel-capacity)")
    parser.add_argument("--no-write", action="store_true",
                        help="print the section instead of writing docs/benchmarks.md")
    args = parser.parse_args()

    records = load_records(args.records)
    load_before = load_average()
    variants = (("channel (ChannelWriter to a child's ChannelReader)", run_channel),
                ("baseline: queue.Queue between two threads", run_queue),
                ("baseline: multiprocessing.Pipe to a child", run_pipe))
    rates: dict[str, list[float]] = {name: [] for name, _ in variants}
    for repeat in range(args.repeats):
        for name, run in variants:
            rate = run(records, args.frame_records, args.capacity)
            rates[name].append(rate)
            print(f"[channel] run {repeat + 1}: {name}: {rate:,.0f} records/s", flush=True)
    load_after = load_average()

    channel_rate = statistics.median(rates[variants[0][0]])
    lines = [
        f"Written by `python -m bench.channel --records {args.records} --repeats "
        f"{args.repeats}` on {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}. "
        f"Census rows as tuples, {args.frame_records} records per frame, reader "
        f"buffer {args.capacity} records; each figure is the median of "
        f"{args.repeats} runs of {args.records:,} records.",
        "",
        *machine_rows(),
        f"| load average before / after (1, 5, 15 min) | {load_before} / {load_after} |",
        "",
        "| variant | records/s (median) | min–max | channel / variant |",
        "| --- | --- | --- | --- |",
    ]
    for name, _ in variants:
        values = rates[name]
        median = statistics.median(values)
        lines.append(f"| {name} | {median:,.0f} | {min(values):,.0f}–{max(values):,.0f} | "
                     f"{channel_rate / median:.2f} |")
    lines += [
        "",
        "The channel's rate bounds how fast one worker node can take records from "
        "its Flink operator; the queue.Queue row is the cost of the same hand-off "
        "without serialization or a process boundary.",
    ]
    body = "\n".join(lines)
    if args.no_write:
        print(body)
    else:
        write_section(HEADING, body)
        print(f"[channel] wrote the section {HEADING!r} of docs/benchmarks.md")


if __name__ == "__main__":
    main()
