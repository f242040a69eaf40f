package sluice.javaclient;

import java.util.BitSet;
import java.util.HashMap;
import java.util.Map;
import java.util.TreeMap;

import org.apache.kafka.common.TopicPartition;

/** Every (partition, offset) the members of a group consumed, and how often. Shared by threads. */
final class Ledger {
    private final Map<TopicPartition, BitSet> seen = new HashMap<>();
    private int duplicates;

    synchronized void record(TopicPartition tp, long offset) {
        Check.require(offset >= 0 && offset < Integer.MAX_VALUE, "%s: offset %d out of range", tp, offset);
        BitSet bits = seen.computeIfAbsent(tp, k -> new BitSet());
        if (bits.get((int) offset)) {
            duplicates++;
        }
        bits.set((int) offset);
    }

    synchronized int duplicates() {
        return duplicates;
    }

    /** Whether every offset below end has been consumed, in every partition of end. */
    synchronized boolean coversAll(Map<TopicPartition, Long> end) {
        for (Map.Entry<TopicPartition, Long> e : end.entrySet()) {
            BitSet bits = seen.get(e.getKey());
            if (bits == null || bits.nextClearBit(0) < e.getValue()) {
                return false;
            }
        }
        return true;
    }

    /** Fails naming the first missing offset of each partition unless {@link #coversAll} holds. */
    synchronized void checkNoGap(Map<TopicPartition, Long> end) {
        Check.require(coversAll(end), "offsets never consumed: %s", missingSummary(end));
    }

    /** Per partition: consumed count and the first offset below end not consumed. */
    synchronized String missingSummary(Map<TopicPartition, Long> end) {
        Map<String, String> out = new TreeMap<>();
        for (Map.Entry<TopicPartition, Long> e : end.entrySet()) {
            BitSet bits = seen.getOrDefault(e.getKey(), new BitSet());
            int firstMissing = bits.nextClearBit(0);
            out.put(e.getKey().toString(), bits.cardinality() + " of " + e.getValue()
                    + (firstMissing < e.getValue() ? ", first missing " + firstMissing : ", complete"));
        }
        return out.toString();
    }
}
