package io.pyscoring.source;

import org.apache.flink.core.io.SimpleVersionedSerializer;
import org.apache.flink.core.memory.DataInputDeserializer;
import org.apache.flink.core.memory.DataOutputSerializer;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;

/**
 * Serializer of {@link LinesEnumeratorState} for checkpoints of the source coordinator.
 *
 * <p>Version 1 writes the file count and the paths, the pending split count and each split in the
 * format of {@link LinesSplitSerializer} version 1, then the next pass. Flink calls it from the
 * source coordinator thread and the checkpointing threads of the JobManager. It keeps no state.
 */
public final class LinesEnumeratorStateSerializer
        implements SimpleVersionedSerializer<LinesEnumeratorState> {

    public static final LinesEnumeratorStateSerializer INSTANCE =
            new LinesEnumeratorStateSerializer();

    static final int VERSION = 1;

    @Override
    public int getVersion() {
        return VERSION;
    }

    @Override
    public byte[] serialize(LinesEnumeratorState state) throws IOException {
        DataOutputSerializer out = new DataOutputSerializer(256);
        out.writeInt(state.files().size());
        for (String file : state.files()) {
            out.writeUTF(file);
        }
        out.writeInt(state.pendingSplits().size());
        for (LinesSplit split : state.pendingSplits()) {
            LinesSplitSerializer.write(split, out);
        }
        out.writeLong(state.nextPass());
        return out.getCopyOfBuffer();
    }

    @Override
    public LinesEnumeratorState deserialize(int version, byte[] serialized) throws IOException {
        if (version != VERSION) {
            throw new IOException(
                    "Cannot read pyscoring-lines enumerator state of serializer version "
                            + version
                            + ": this build reads version "
                            + VERSION
                            + " only. Restore the job with the pyscoring version that took the"
                            + " checkpoint, or start it without the checkpoint.");
        }
        DataInputDeserializer in = new DataInputDeserializer(serialized);

        int fileCount = in.readInt();
        List<String> files = new ArrayList<>(fileCount);
        for (int i = 0; i < fileCount; i++) {
            files.add(in.readUTF());
        }

        int splitCount = in.readInt();
        List<LinesSplit> pendingSplits = new ArrayList<>(splitCount);
        for (int i = 0; i < splitCount; i++) {
            pendingSplits.add(LinesSplitSerializer.read(in));
        }

        long nextPass = in.readLong();
        return new LinesEnumeratorState(files, pendingSplits, nextPass);
    }
}
