package io.pyscoring.source;

import org.apache.flink.core.io.SimpleVersionedSerializer;
import org.apache.flink.core.memory.DataInputDeserializer;
import org.apache.flink.core.memory.DataInputView;
import org.apache.flink.core.memory.DataOutputSerializer;
import org.apache.flink.core.memory.DataOutputView;

import java.io.IOException;

/**
 * Serializer of {@link LinesSplit}, used for checkpoints and for sending splits from the
 * enumerator to the readers.
 *
 * <p>Version 1 writes the path as modified UTF-8, then pass, offset and line number as longs.
 * Flink calls it from the task thread, the checkpointing threads and the source coordinator
 * thread. It keeps no state, so one instance may be shared.
 */
public final class LinesSplitSerializer implements SimpleVersionedSerializer<LinesSplit> {

    public static final LinesSplitSerializer INSTANCE = new LinesSplitSerializer();

    static final int VERSION = 1;

    @Override
    public int getVersion() {
        return VERSION;
    }

    @Override
    public byte[] serialize(LinesSplit split) throws IOException {
        DataOutputSerializer out = new DataOutputSerializer(64 + split.path().length());
        write(split, out);
        return out.getCopyOfBuffer();
    }

    @Override
    public LinesSplit deserialize(int version, byte[] serialized) throws IOException {
        checkVersion(version);
        return read(new DataInputDeserializer(serialized));
    }

    /** Rejects a version that this serializer cannot read. */
    static void checkVersion(int version) throws IOException {
        if (version != VERSION) {
            throw new IOException(
                    "Cannot read a pyscoring-lines split of serializer version "
                            + version
                            + ": this build reads version "
                            + VERSION
                            + " only. Restore the job with the pyscoring version that took the"
                            + " checkpoint, or start it without the checkpoint.");
        }
    }

    static void write(LinesSplit split, DataOutputView out) throws IOException {
        out.writeUTF(split.path());
        out.writeLong(split.pass());
        out.writeLong(split.offset());
        out.writeLong(split.lineNumber());
    }

    static LinesSplit read(DataInputView in) throws IOException {
        String path = in.readUTF();
        long pass = in.readLong();
        long offset = in.readLong();
        long lineNumber = in.readLong();
        return new LinesSplit(path, pass, offset, lineNumber);
    }
}
