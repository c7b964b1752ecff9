"""Bounded record channel from a Flink operator to its node's process.

The writer (in the Flink operator) groups records into frames and writes
each frame, length-prefixed and pickled, to a pipe. The reader (in the node
process) reads frames on a thread into a buffer of at most
`capacity_records` records (see ChannelReader). When the buffer is full the
reader stops reading, the pipe's kernel buffer fills, and the writer's
`write` blocks, which backpressures Flink. Records are never dropped, and
the records in flight are bounded by that buffer, the pipe buffer and one
frame on each side.

Both ends belong to one job and one parent-child pair of processes, so
pickle is safe here.
"""

from __future__ import annotations

import collections
import logging
import os
import pickle
import struct
import threading
import time
from typing import Any, BinaryIO, Iterator, Sequence

import numpy as np

logger = logging.getLogger(__name__)

_HEADER = struct.Struct("<Q")


class ChannelClosedError(RuntimeError):
    """The other end of the channel closed: the node process exited or the writer closed."""


class ChannelWriter:
    """Operator end: `write` records, `close` sends the end-of-stream marker.

    A frame is written when it contains `frame_records` records, when a
    record arrives `flush_interval_s` after the frame's first record, or
    when the records written reach `expected_records` (a bounded share),
    so the reader of a bounded share never waits for a partial frame.
    """

    def __init__(self, stream: BinaryIO, frame_records: int = 256,
                 flush_interval_s: float = 0.2, expected_records: int | None = None):
        if frame_records < 1:
            raise ValueError(f"frame_records must be at least 1, got {frame_records}")
        self._stream = stream
        self._frame_records = frame_records
        self._flush_interval_s = flush_interval_s
        self._frame: list[Any] = []
        self._frame_started = 0.0
        self._expected_records = expected_records
        self.records_written = 0
        self.closed = False

    def write(self, record: Any) -> None:
        """Add one record; blocks while the channel is full. Raises ChannelClosedError."""
        if not self._frame:
            self._frame_started = time.monotonic()
        self._frame.append(record)
        if len(self._frame) >= self._frame_records or \
                time.monotonic() - self._frame_started >= self._flush_interval_s or \
                self.records_written + len(self._frame) == self._expected_records:
            self.flush()

    def flush(self) -> None:
        if not self._frame:
            return
        payload = pickle.dumps(self._frame, protocol=pickle.HIGHEST_PROTOCOL)
        self._send(_HEADER.pack(len(payload)) + payload)
        self.records_written += len(self._frame)
        self._frame = []

    def close(self) -> None:
        """Flush, send the end-of-stream marker and close the pipe; safe to call twice."""
        if self.closed:
            return
        try:
            self.flush()
            self._send(_HEADER.pack(0))
        finally:
            self.closed = True
            try:
                self._stream.close()
            except OSError:
                pass

    def abort(self) -> None:
        """Close the pipe without flushing, so the reader sees a broken stream."""
        self.closed = True
        self._frame = []
        try:
            self._stream.close()
        except OSError:
            pass

    def _send(self, data: bytes) -> None:
        try:
            self._stream.write(data)
            self._stream.flush()
        except (BrokenPipeError, ValueError, OSError) as error:
            raise ChannelClosedError(
                f"the node process closed its end of the record channel ({error})") from error


class ChannelReader:
    """Node end: iterate records, numpy batches or a tf.data.Dataset.

    The reader thread buffers at most `capacity_records` records plus one
    frame before it stops reading the pipe. `startup_records`
    is the larger bound that applies until `start_consuming` is called: a
    node that waits for its cluster spec keeps reading, so the Flink
    operator can still deliver the AM's address, which may queue behind
    records in the operator's input. `end_of_stream` is set after the
    writer's end marker. A pipe that breaks without the marker ends the
    iteration with ChannelClosedError.
    """

    def __init__(self, stream: BinaryIO, capacity_records: int = 4096,
                 startup_records: int | None = None):
        self._stream = stream
        self._capacity = max(1, capacity_records)
        self._limit = max(self._capacity, startup_records or 0)
        self._frames: collections.deque = collections.deque()
        self._buffered = 0
        # Records of a frame that `read` took but did not return yet.
        self._leftover: list[Any] = []
        self._condition = threading.Condition()
        self._error: BaseException | None = None
        self._done = False
        self.end_of_stream = False
        self.records_read = 0
        self._thread = threading.Thread(target=self._read_loop, name="channel-reader", daemon=True)
        self._thread.start()

    def start_consuming(self) -> None:
        """Lower the bound from `startup_records` to `capacity_records`."""
        with self._condition:
            self._limit = self._capacity
            self._condition.notify_all()

    def _read_exact(self, size: int) -> bytes | None:
        chunks = []
        remaining = size
        while remaining:
            chunk = self._stream.read(remaining)
            if not chunk:
                return None
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    def _read_loop(self) -> None:
        try:
            while True:
                with self._condition:
                    while self._buffered >= self._limit:
                        self._condition.wait()
                header = self._read_exact(_HEADER.size)
                if header is None:
                    raise ChannelClosedError("the record channel broke before its end marker")
                (size,) = _HEADER.unpack(header)
                if size == 0:
                    self.end_of_stream = True
                    break
                payload = self._read_exact(size)
                if payload is None:
                    raise ChannelClosedError("the record channel broke inside a frame")
                frame = pickle.loads(payload)
                with self._condition:
                    self._frames.append(frame)
                    self._buffered += len(frame)
                    self._condition.notify_all()
        except BaseException as error:  # handed to the consuming thread
            self._error = error
        finally:
            with self._condition:
                self._done = True
                self._condition.notify_all()

    def _next_frame(self, timeout_s: float | None = None) -> list[Any] | None:
        """Return the next frame, or None at the end; raises the reader's error."""
        with self._condition:
            while not self._frames and not self._done:
                if not self._condition.wait(timeout_s):
                    raise TimeoutError(f"no record arrived within {timeout_s} s")
            if self._frames:
                frame = self._frames.popleft()
                self._buffered -= len(frame)
                self._condition.notify_all()
                self.records_read += len(frame)
                return frame
            if self._error is not None:
                raise self._error
            return None

    def frames(self) -> Iterator[list[Any]]:
        if self._leftover:
            leftover, self._leftover = self._leftover, []
            yield leftover
        while True:
            frame = self._next_frame()
            if frame is None:
                return
            yield frame

    def read(self, count: int) -> list[Any]:
        """Return the next `count` records; fewer only when the stream ends first."""
        records = self._leftover[:count]
        self._leftover = self._leftover[count:]
        while len(records) < count:
            frame = self._next_frame()
            if frame is None:
                break
            records.extend(frame)
        if len(records) > count:
            self._leftover = records[count:]
            records = records[:count]
        return records

    def records(self) -> Iterator[Any]:
        for frame in self.frames():
            yield from frame

    def batches(self, batch_size: int, limit: int | None = None) -> Iterator[list[Any]]:
        """Yield lists of `batch_size` records; the last one may be shorter.

        With `limit` the batches end after that many records (a bounded
        share), without waiting for the end of the stream.
        """
        batch: list[Any] = []
        remaining = limit
        while remaining is None or remaining > 0:
            wanted = batch_size - len(batch)
            if remaining is not None:
                wanted = min(wanted, remaining)
            records = self.read(wanted)
            if not records:
                break
            batch.extend(records)
            if remaining is not None:
                remaining -= len(records)
            if len(batch) == batch_size:
                yield batch
                batch = []
            if len(records) < wanted:
                break
        if batch:
            yield batch

    def numpy_batches(self, batch_size: int, names: Sequence[str], dtypes: Sequence[str],
                      limit: int | None = None) -> Iterator[dict[str, np.ndarray]]:
        """Yield batches as one numpy array per field; dtypes are "int64", "float32" or "string"."""
        for batch in self.batches(batch_size, limit):
            yield records_to_columns(batch, names, dtypes)

    def dataset(self, names: Sequence[str], dtypes: Sequence[str], batch_size: int,
                limit: int | None = None):
        """Return a tf.data.Dataset of batches (dict of column tensors) read from the channel."""
        import tensorflow as tf

        tf_types = {"int64": tf.int64, "float32": tf.float32, "string": tf.string}
        signature = {name: tf.TensorSpec([None], tf_types[dtype])
                     for name, dtype in zip(names, dtypes)}
        return tf.data.Dataset.from_generator(
            lambda: self.numpy_batches(batch_size, names, dtypes, limit),
            output_signature=signature)


def records_to_columns(records: Sequence[Sequence[Any]], names: Sequence[str],
                       dtypes: Sequence[str]) -> dict[str, np.ndarray]:
    """Turn row tuples into one numpy array per field."""
    columns: dict[str, np.ndarray] = {}
    for position, (name, dtype) in enumerate(zip(names, dtypes)):
        values = [record[position] for record in records]
        if dtype == "string":
            array = np.empty(len(values), dtype=object)
            array[:] = values
        else:
            array = np.asarray(values, dtype=dtype)
        columns[name] = array
    return columns


def open_pipe() -> tuple[int, int]:
    """Return (read_fd, write_fd) of a new pipe; neither end is inherited by default."""
    return os.pipe()
