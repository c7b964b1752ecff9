import os
import threading
import time

import numpy as np
import pytest

from pyscoring.cluster.channel import (
    ChannelClosedError,
    ChannelReader,
    ChannelWriter,
    records_to_columns,
)


def make_pipe():
    read_fd, write_fd = os.pipe()
    return os.fdopen(read_fd, "rb"), os.fdopen(write_fd, "wb")


def test_records_arrive_in_order_with_end_marker():
    reader_stream, writer_stream = make_pipe()
    reader = ChannelReader(reader_stream, capacity_records=64)
    writer = ChannelWriter(writer_stream, frame_records=10)
    for value in range(1000):
        writer.write((value, f"row{value}"))
    writer.close()

    records = list(reader.records())
    assert records == [(value, f"row{value}") for value in range(1000)]
    assert reader.end_of_stream is True
    assert writer.records_written == 1000


def test_expected_records_flush_partial_frame():
    reader_stream, writer_stream = make_pipe()
    reader = ChannelReader(reader_stream)
    writer = ChannelWriter(writer_stream, frame_records=256, expected_records=300)
    for value in range(300):
        writer.write((value,))

    records = reader.read(300)
    assert len(records) == 300
    assert records[-1] == (299,)


def test_full_channel_blocks_writer():
    reader_stream, writer_stream = make_pipe()
    reader = ChannelReader(reader_stream, capacity_records=100)
    writer = ChannelWriter(writer_stream, frame_records=50)
    written = []

    def produce():
        for value in range(2000):
            # Distinct strings, so pickle cannot share one copy across a frame.
            writer.write((value, f"{value:0>1000}"))
            written.append(value)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    time.sleep(1.0)
    # 100 buffered records plus the pipe's kernel buffer (64 KiB) and one frame.
    stalled_at = len(written)
    assert stalled_at < 400
    time.sleep(0.5)
    assert len(written) == stalled_at

    consumed = reader.read(2000)
    thread.join(5)
    assert len(consumed) == 2000
    assert [record[0] for record in consumed] == list(range(2000))


def test_startup_capacity_applies_until_consuming():
    reader_stream, writer_stream = make_pipe()
    reader = ChannelReader(reader_stream, capacity_records=10, startup_records=500)
    writer = ChannelWriter(writer_stream, frame_records=10)
    for value in range(400):
        writer.write((value,))
    # The writer was never blocked: the reader took 400 records before consuming.
    reader.start_consuming()
    assert len(reader.read(400)) == 400


def test_broken_pipe_raises_on_reader():
    reader_stream, writer_stream = make_pipe()
    reader = ChannelReader(reader_stream)
    writer = ChannelWriter(writer_stream, frame_records=5)
    for value in range(5):
        writer.write((value,))
    writer.abort()

    with pytest.raises(ChannelClosedError, match="before its end marker"):
        list(reader.records())


def test_writer_raises_when_reader_gone():
    reader_stream, writer_stream = make_pipe()
    reader_stream.close()
    writer = ChannelWriter(writer_stream, frame_records=1)
    with pytest.raises(ChannelClosedError, match="closed its end"):
        writer.write((1,))


def test_numpy_batches_have_column_dtypes():
    reader_stream, writer_stream = make_pipe()
    reader = ChannelReader(reader_stream)
    writer = ChannelWriter(writer_stream, frame_records=3)
    for value in range(7):
        writer.write((value, f"c{value}", value % 2))
    writer.close()

    batches = list(reader.numpy_batches(4, ("age", "sex", "label"),
                                        ("int64", "string", "int64")))
    assert [len(batch["age"]) for batch in batches] == [4, 3]
    assert batches[0]["age"].dtype == np.int64
    assert batches[0]["sex"].dtype == object
    assert batches[1]["sex"].tolist() == ["c4", "c5", "c6"]


def test_records_to_columns_float():
    columns = records_to_columns([(1.5, 2), (2.5, 3)], ("a", "b"), ("float32", "int64"))
    assert columns["a"].dtype == np.float32
    assert columns["b"].tolist() == [2, 3]


def test_batches_stop_at_limit_without_end_marker():
    reader_stream, writer_stream = make_pipe()
    reader = ChannelReader(reader_stream)
    writer = ChannelWriter(writer_stream, frame_records=7, expected_records=20)
    for value in range(20):
        writer.write((value,))

    batches = list(reader.batches(8, limit=20))
    assert [len(batch) for batch in batches] == [8, 8, 4]
    assert [record[0] for batch in batches for record in batch] == list(range(20))


def test_read_keeps_rest_of_frame():
    reader_stream, writer_stream = make_pipe()
    reader = ChannelReader(reader_stream)
    writer = ChannelWriter(writer_stream, frame_records=10)
    for value in range(10):
        writer.write((value,))
    writer.close()

    assert reader.read(3) == [(0,), (1,), (2,)]
    assert list(reader.records()) == [(value,) for value in range(3, 10)]
