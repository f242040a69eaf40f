package main

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	// producePartitions is how many partitions each produce-consume topic has.
	producePartitions = 3
	// produceRecords is how many records each codec's run produces, spread over the partitions.
	produceRecords = 3000
)

// codecs maps a codec argument to the producer option and the compression type (batch
// attributes bits 0-2) the consumed batches must carry. "default" sets no option: franz-go's
// default is snappy.
var codecs = map[string]struct {
	codecs []kgo.CompressionCodec
	want   uint8
}{
	"default": {nil, 2},
	"none":    {[]kgo.CompressionCodec{kgo.NoCompression()}, 0},
	"gzip":    {[]kgo.CompressionCodec{kgo.GzipCompression()}, 1},
	"snappy":  {[]kgo.CompressionCodec{kgo.SnappyCompression()}, 2},
	"lz4":     {[]kgo.CompressionCodec{kgo.Lz4Compression()}, 3},
	"zstd":    {[]kgo.CompressionCodec{kgo.ZstdCompression()}, 4},
}

// sent is what the producer was asked to send and what the broker acknowledged.
type sent struct {
	record *kgo.Record
	err    error
}

// runProduceConsume produces produceRecords numbered records with franz-go's default producer
// (idempotent, acks=all) and the codec asked for, then consumes every partition from the start
// and requires exactly what was sent: same keys, values, headers and timestamps, offsets dense
// from 0 in send order, batches compressed with the codec.
func runProduceConsume(bootstrap, codec string) {
	spec, known := codecs[codec]
	require(known, "unknown codec %q (want default, none, gzip, snappy, lz4 or zstd)", codec)
	topic := uniqueName("franz-produce-" + codec)
	admin := newClient(bootstrap, "franz-go-produce-admin")
	defer admin.Close()
	adm := kadm.NewClient(admin)
	created, err := adm.CreateTopic(ctx(), producePartitions, 1, nil, topic)
	noErr(err, "CreateTopics "+topic)
	noErr(created.Err, "CreateTopics "+topic+" (topic error)")

	started := time.Now()
	acked := produce(bootstrap, topic, codec, spec.codecs)
	ok("%s: %d records produced and acknowledged in %v (idempotent producer id %d)", codec, len(acked),
		time.Since(started).Round(time.Millisecond), acked[0].record.ProducerID)

	ends, err := adm.ListEndOffsets(ctx(), topic)
	noErr(err, "ListOffsets (latest) "+topic)
	perPartition := int64(produceRecords / producePartitions)
	for p := int32(0); p < producePartitions; p++ {
		end, found := ends.Lookup(topic, p)
		require(found, "ListOffsets: no partition %d", p)
		noErr(end.Err, "ListOffsets (partition error)")
		require(end.Offset == perPartition, "ListOffsets %s-%d: high watermark %d, want %d", topic, p, end.Offset, perPartition)
	}
	ok("%s: ListOffsets: high watermark %d on each of %d partitions", codec, perPartition, producePartitions)

	started = time.Now()
	consumed := consumeAll(bootstrap, topic)
	compare(codec, spec.want, acked, consumed)
	ok("%s: %d records consumed back exactly in %v (keys, values, headers, timestamps; offsets dense; batch codec %d)",
		codec, len(consumed), time.Since(started).Round(time.Millisecond), spec.want)

	listOffsetsByTime(adm, codec, topic, acked)
	logDirs(adm, codec, topic)
	deleteRecords(adm, bootstrap, codec, topic, acked)
}

// listOffsetsByTime requires ListOffsets by timestamp to answer the first record at or after
// it (Kafka looks inside the batch, compressed or not) and ListOffsets max timestamp (KIP-734)
// the record with the largest timestamp, in partition 0.
func listOffsetsByTime(adm *kadm.Client, codec, topic string, acked []sent) {
	var partition0 []*kgo.Record
	for _, s := range acked {
		if s.record.Partition == 0 {
			partition0 = append(partition0, s.record)
		}
	}
	byTimestamp := func() {
		for _, k := range []int{0, 1, len(partition0) / 2, len(partition0) - 1} {
			target := partition0[k]
			listed, err := adm.ListOffsetsAfterMilli(ctx(), target.Timestamp.UnixMilli(), topic)
			noErr(err, "ListOffsets by timestamp")
			got, _ := listed.Lookup(topic, 0)
			noErr(got.Err, "ListOffsets by timestamp (partition error)")
			require(got.Offset == target.Offset && got.Timestamp == target.Timestamp.UnixMilli(),
				"ListOffsets by timestamp %d: offset %d timestamp %d, want offset %d timestamp %d (the record with that timestamp)",
				target.Timestamp.UnixMilli(), got.Offset, got.Timestamp, target.Offset, target.Timestamp.UnixMilli())
		}
		ok("%s: ListOffsets by timestamp answers the exact record (offsets 0, 1, %d, %d)", codec, len(partition0)/2, len(partition0)-1)
	}
	byTimestamp()
	last := partition0[len(partition0)-1]
	maxTs, err := adm.ListMaxTimestampOffsets(ctx(), topic)
	noErr(err, "ListOffsets max timestamp")
	got, _ := maxTs.Lookup(topic, 0)
	noErr(got.Err, "ListOffsets max timestamp (partition error)")
	require(got.Offset == last.Offset && got.Timestamp == last.Timestamp.UnixMilli(),
		"ListOffsets max timestamp: offset %d timestamp %d, want offset %d timestamp %d",
		got.Offset, got.Timestamp, last.Offset, last.Timestamp.UnixMilli())
	ok("%s: ListOffsets max timestamp: offset %d, timestamp %d", codec, got.Offset, got.Timestamp)
}

// logDirs requires DescribeLogDirs to report every partition of topic with data on disk.
func logDirs(adm *kadm.Client, codec, topic string) {
	described, err := adm.DescribeAllLogDirs(ctx(), kadm.TopicsSet{topic: {0: {}, 1: {}, 2: {}}})
	noErr(err, "DescribeLogDirs")
	var total int64
	for _, dirs := range described {
		noErr(dirs.Error(), "DescribeLogDirs (directory error)")
		for p := int32(0); p < producePartitions; p++ {
			d, found := dirs.LookupPartition(topic, p)
			require(found && d.Size > 0, "DescribeLogDirs: partition %d found %v, size %d", p, found, d.Size)
			total += d.Size
		}
	}
	require(len(described) == 1, "DescribeLogDirs: %d brokers answered, want 1", len(described))
	ok("%s: DescribeLogDirs: %d partitions, %d bytes on disk", codec, producePartitions, total)
}

// deleteRecords deletes partition 0 below deleteBelow (inside a batch, where the codec packs
// several records in one), then requires the log start offset there and a consumer from the
// start to get exactly the records from that offset on.
func deleteRecords(adm *kadm.Client, bootstrap, codec, topic string, acked []sent) {
	const deleteBelow = 101
	deleted, err := adm.DeleteRecords(ctx(), kadm.Offsets{topic: {0: {Topic: topic, Partition: 0, At: deleteBelow, LeaderEpoch: -1}}})
	noErr(err, "DeleteRecords")
	d := deleted[topic][0]
	noErr(d.Err, "DeleteRecords (partition error)")
	require(d.LowWatermark == deleteBelow, "DeleteRecords: low watermark %d, want %d", d.LowWatermark, deleteBelow)
	starts, err := adm.ListStartOffsets(ctx(), topic)
	noErr(err, "ListOffsets (earliest)")
	start, _ := starts.Lookup(topic, 0)
	noErr(start.Err, "ListOffsets (earliest, partition error)")
	require(start.Offset == deleteBelow, "ListOffsets earliest after DeleteRecords: %d, want %d", start.Offset, deleteBelow)

	cl := newClient(bootstrap, "franz-go-consumer-after-delete",
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}),
		kgo.FetchMaxWait(500*time.Millisecond))
	defer cl.Close()
	want := produceRecords/producePartitions - deleteBelow
	var got []*kgo.Record
	deadline := time.Now().Add(waitMax)
	for len(got) < want {
		require(time.Now().Before(deadline), "after DeleteRecords: consumed %d of %d records within %v", len(got), want, waitMax)
		fetches := cl.PollFetches(ctx())
		for _, e := range fetches.Errors() {
			fail("fetch %s-%d after DeleteRecords: %v", e.Topic, e.Partition, e.Err)
		}
		got = append(got, fetches.Records()...)
	}
	var partition0 []sent
	for _, s := range acked {
		if s.record.Partition == 0 && s.record.Offset >= deleteBelow {
			partition0 = append(partition0, s)
		}
	}
	require(len(got) == len(partition0), "after DeleteRecords: consumed %d records, want %d", len(got), len(partition0))
	compare(codec+" after DeleteRecords", codecs[codec].want, partition0, got)
	ok("%s: DeleteRecords below %d: log start offset %d, a consumer from the start gets offsets %d..%d exactly",
		codec, deleteBelow, start.Offset, got[0].Offset, got[len(got)-1].Offset)
}

// produce sends the numbered records (record i to partition i % producePartitions) and waits
// for every acknowledgement; fails on any error or on offsets that are not dense in send order.
func produce(bootstrap, topic, codec string, compression []kgo.CompressionCodec) []sent {
	opts := []kgo.Opt{
		kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(5 * time.Millisecond),
		kgo.RecordDeliveryTimeout(waitMax),
	}
	if compression != nil {
		opts = append(opts, kgo.ProducerBatchCompression(compression...))
	}
	cl := newClient(bootstrap, "franz-go-producer-"+codec, opts...)
	defer cl.Close()
	results := make([]sent, produceRecords)
	// One millisecond apart, so every record of a partition has its own timestamp and
	// ListOffsets by timestamp has exactly one right answer. From now on (at most seconds
	// ahead, within any broker's allowed skew): franz-go counts a record's delivery timeout
	// from its timestamp, so timestamps in the past would time out at once.
	base := time.UnixMilli(time.Now().UnixMilli())
	var wg sync.WaitGroup
	for i := range results {
		r := numbered(codec, i, base)
		results[i].record = r
		wg.Add(1)
		cl.Produce(ctx(), r, func(r *kgo.Record, err error) {
			results[i].err = err
			wg.Done()
		})
	}
	noErr(cl.Flush(ctx()), "Flush")
	wg.Wait()
	next := make(map[int32]int64)
	for i, s := range results {
		noErr(s.err, fmt.Sprintf("produce record %d", i))
		r := s.record
		require(r.Offset == next[r.Partition], "record %d: acknowledged at offset %d of partition %d, want %d (dense, in send order)",
			i, r.Offset, r.Partition, next[r.Partition])
		next[r.Partition]++
		require(r.ProducerID >= 0, "record %d: producer id %d: the default producer is idempotent", i, r.ProducerID)
	}
	return results
}

// numbered is record i of a run: key "key-i" (null for every 100th), a compressible value,
// two headers, and timestamp base + i ms.
func numbered(codec string, i int, base time.Time) *kgo.Record {
	r := &kgo.Record{
		Partition: int32(i % producePartitions),
		Value:     []byte(fmt.Sprintf("value-%05d-%s", i, strings.Repeat("sluice franz-go ", 16))),
		Headers: []kgo.RecordHeader{
			{Key: "seq", Value: []byte(fmt.Sprint(i))},
			{Key: "codec", Value: []byte(codec)},
		},
		Timestamp: base.Add(time.Duration(i) * time.Millisecond),
	}
	if i%100 != 0 {
		r.Key = []byte(fmt.Sprintf("key-%05d", i))
	}
	return r
}

// consumeAll reads every partition of topic from the start until it has produceRecords records.
func consumeAll(bootstrap, topic string) []*kgo.Record {
	starts := make(map[int32]kgo.Offset)
	for p := int32(0); p < producePartitions; p++ {
		starts[p] = kgo.NewOffset().AtStart()
	}
	cl := newClient(bootstrap, "franz-go-consumer",
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: starts}),
		kgo.FetchMaxWait(500*time.Millisecond))
	defer cl.Close()
	var records []*kgo.Record
	deadline := time.Now().Add(waitMax)
	for len(records) < produceRecords {
		require(time.Now().Before(deadline), "consumed %d of %d records within %v", len(records), produceRecords, waitMax)
		fetches := cl.PollFetches(ctx())
		for _, e := range fetches.Errors() {
			fail("fetch %s-%d: %v", e.Topic, e.Partition, e.Err)
		}
		records = append(records, fetches.Records()...)
	}
	require(len(records) == produceRecords, "consumed %d records, produced %d", len(records), produceRecords)
	return records
}

// compare requires consumed to be exactly what was acknowledged, partition by partition in
// offset order (a fetch may interleave partitions, never reorder one).
func compare(codec string, wantCodec uint8, acked []sent, consumed []*kgo.Record) {
	byPartition := make(map[int32][]*kgo.Record)
	for _, s := range acked {
		byPartition[s.record.Partition] = append(byPartition[s.record.Partition], s.record)
	}
	next := make(map[int32]int)
	for _, got := range consumed {
		list := byPartition[got.Partition]
		n := next[got.Partition]
		require(n < len(list), "partition %d: more records than produced (offset %d)", got.Partition, got.Offset)
		want := list[n]
		next[got.Partition]++
		where := fmt.Sprintf("%s partition %d offset %d", codec, got.Partition, got.Offset)
		require(got.Offset == want.Offset, "%s: expected offset %d next (dense, in order)", where, want.Offset)
		require(sameBytes(got.Key, want.Key), "%s: key %q, sent %q", where, got.Key, want.Key)
		require(sameBytes(got.Value, want.Value), "%s: value %q, sent %q", where, got.Value, want.Value)
		require(len(got.Headers) == len(want.Headers), "%s: %d headers, sent %d", where, len(got.Headers), len(want.Headers))
		for h := range want.Headers {
			require(got.Headers[h].Key == want.Headers[h].Key && bytes.Equal(got.Headers[h].Value, want.Headers[h].Value),
				"%s: header %d is %s=%q, sent %s=%q", where, h, got.Headers[h].Key, got.Headers[h].Value,
				want.Headers[h].Key, want.Headers[h].Value)
		}
		require(got.Timestamp.Equal(want.Timestamp), "%s: timestamp %v, sent %v", where, got.Timestamp, want.Timestamp)
		require(got.Attrs.TimestampType() == 0, "%s: timestamp type %d, want 0 (CreateTime)", where, got.Attrs.TimestampType())
		require(got.Attrs.CompressionType() == wantCodec, "%s: batch compression %d, want %d", where, got.Attrs.CompressionType(), wantCodec)
		require(got.ProducerID == want.ProducerID, "%s: producer id %d, sent with %d", where, got.ProducerID, want.ProducerID)
	}
}

// sameBytes is bytes.Equal that also tells null from empty.
func sameBytes(a, b []byte) bool {
	return (a == nil) == (b == nil) && bytes.Equal(a, b)
}
