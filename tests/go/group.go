package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const (
	groupPartitions = 4
	// recordsPerStage is how many records are produced before each stage.
	recordsPerStage = 1000
	// maxPollRecords bounds one poll; duplicates are bounded by one poll per member change.
	maxPollRecords = 50
	duplicatesMax  = 3 * maxPollRecords
)

// runGroup runs two group members of one group on a 4-partition topic, with the classic
// protocol (JoinGroup/SyncGroup/Heartbeat; franz-go's default cooperative-sticky balancer) or
// KIP-848's ("consumer": ConsumerGroupHeartbeat, kgo.ServerSideBalancer):
//
//  1. member A alone consumes stage 1 and commits after every poll;
//  2. member B joins: the partitions are split between A and B (disjoint, covering all), the
//     group is described stable with two members, both consume stage 2;
//  3. A leaves (commit, close): B takes over every partition and consumes stage 3;
//  4. B leaves; the committed offsets (OffsetFetch) equal the end offsets;
//  5. a restarted member C resumes there (its first offset of each partition is the committed
//     one) and consumes stage 4.
//
// Over all stages every produced offset is consumed (no gap), duplicates within duplicatesMax.
func runGroup(bootstrap, protocol string) {
	topic := uniqueName("franz-group-" + protocol)
	group := uniqueName("franz-group-" + protocol)
	admin := newClient(bootstrap, "franz-go-group-admin")
	defer admin.Close()
	adm := kadm.NewClient(admin)
	if protocol == "consumer" {
		if reason := kip848Unsupported(admin); reason != "" {
			fmt.Printf("SKIP group consumer: %s\n", reason)
			return
		}
	}
	created, err := adm.CreateTopic(ctx(), groupPartitions, 1, nil, topic)
	noErr(err, "CreateTopics "+topic)
	noErr(created.Err, "CreateTopics "+topic+" (topic error)")
	producer := newClient(bootstrap, "franz-go-group-producer", kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	defer producer.Close()

	l := &ledger{seen: make(map[int32]map[int64]int)}
	end := make(map[int32]int64)
	produceStage(producer, 1, end)
	a := startMember(bootstrap, protocol, group, topic, "A", l)
	waitConsumed(l, end, a)
	require(len(a.assigned()) == groupPartitions, "member A alone: assigned %v", a.assigned())
	ok("%s: member A alone got all %d partitions and consumed stage 1", protocol, groupPartitions)

	b := startMember(bootstrap, protocol, group, topic, "B", l)
	waitFor("A and B to split the partitions", func() bool { return split(a, b) }, func() string { return a.String() + " " + b.String() })
	ok("%s: rebalance after B joined: A %v, B %v", protocol, a.assigned(), b.assigned())
	describeStable(adm, protocol, group, 2)
	produceStage(producer, 2, end)
	waitConsumed(l, end, a, b)
	require(a.inStage(2) > 0 && b.inStage(2) > 0, "stage 2: both members should consume: A %d, B %d", a.inStage(2), b.inStage(2))
	ok("%s: stage 2 consumed by both: A %d, B %d records", protocol, a.inStage(2), b.inStage(2))

	a.stop()
	waitFor("B to take over every partition", func() bool { b.rethrow(); return len(b.assigned()) == groupPartitions }, b.String)
	produceStage(producer, 3, end)
	waitConsumed(l, end, b)
	ok("%s: A left; B took over %v and consumed stage 3", protocol, b.assigned())

	b.stop()
	committed := committedOffsets(adm, group, topic)
	require(maps.Equal(committed, end), "committed offsets after every member stopped: %v, want the end offsets %v", committed, end)
	ok("%s: committed offsets equal the end offsets: %v", protocol, committed)

	produceStage(producer, 4, end)
	c := startMember(bootstrap, protocol, group, topic, "C", l)
	waitConsumed(l, end, c)
	first := c.firstOffsets()
	c.stop()
	require(maps.Equal(first, committed), "restarted member C: first offsets %v, want the committed offsets %v", first, committed)
	ok("%s: restarted member C resumed at the committed offsets %v", protocol, first)

	l.checkNoGap(end)
	require(l.duplicates() <= duplicatesMax, "%d records consumed twice (bound %d)", l.duplicates(), duplicatesMax)
	final := committedOffsets(adm, group, topic)
	require(maps.Equal(final, end), "committed offsets after C stopped: %v, want %v", final, end)
	ok("%s: %d records, every offset consumed, %d duplicates (bound %d)", protocol, 4*recordsPerStage, l.duplicates(), duplicatesMax)

	deleteGroup(adm, protocol, group, topic, final)
}

// deleteGroup deletes one partition's committed offset (OffsetDelete), then the empty group
// (DeleteGroups), and requires each to be gone.
func deleteGroup(adm *kadm.Client, protocol, group, topic string, committed map[int32]int64) {
	deleted, err := adm.DeleteOffsets(ctx(), group, kadm.TopicsSet{topic: {0: {}}})
	noErr(err, "OffsetDelete")
	partitionErr, found := deleted.Lookup(topic, 0)
	require(found, "OffsetDelete: no answer for partition 0: %v", deleted)
	noErr(partitionErr, "OffsetDelete (partition error)")
	left := committedOffsets(adm, group, topic)
	want := maps.Clone(committed)
	delete(want, 0)
	require(maps.Equal(left, want), "after OffsetDelete of partition 0: committed %v, want %v", left, want)
	ok("%s: OffsetDelete of partition 0: committed offsets now %v", protocol, left)

	response, err := adm.DeleteGroup(ctx(), group)
	noErr(err, "DeleteGroups")
	noErr(response.Err, "DeleteGroups (group error)")
	listed, err := adm.ListGroups(ctx())
	noErr(err, "ListGroups")
	_, still := listed[group]
	require(!still, "ListGroups still lists %s after DeleteGroups", group)
	gone := committedOffsets(adm, group, topic)
	require(len(gone) == 0, "committed offsets of a deleted group: %v", gone)
	ok("%s: DeleteGroups: the group and its offsets are gone", protocol)
}

// kip848Unsupported is why franz-go would not use KIP-848 with this broker, or "".
func kip848Unsupported(cl *kgo.Client) string {
	response, err := kmsg.NewPtrApiVersionsRequest().RequestWith(ctx(), cl)
	noErr(err, "ApiVersions")
	for _, key := range response.ApiKeys {
		if key.ApiKey == int16(kmsg.ConsumerGroupHeartbeat) {
			if key.MaxVersion < 1 {
				return fmt.Sprintf("the broker advertises ConsumerGroupHeartbeat up to v%d; franz-go's KIP-848 needs v1", key.MaxVersion)
			}
			return ""
		}
	}
	return "the broker does not advertise ConsumerGroupHeartbeat (API 68)"
}

// produceStage produces recordsPerStage records round-robin over the partitions and advances
// end to the acknowledged offsets.
func produceStage(producer *kgo.Client, stage int, end map[int32]int64) {
	records := make([]*kgo.Record, recordsPerStage)
	for i := range records {
		records[i] = &kgo.Record{
			Partition: int32(i % groupPartitions),
			Key:       []byte(fmt.Sprint(i)),
			Value:     []byte(fmt.Sprintf("stage-%d-%d", stage, i)),
		}
	}
	results := producer.ProduceSync(ctx(), records...)
	noErr(results.FirstErr(), fmt.Sprintf("produce stage %d", stage))
	for _, r := range results {
		end[r.Record.Partition] = max(end[r.Record.Partition], r.Record.Offset+1)
	}
}

func waitConsumed(l *ledger, end map[int32]int64, members ...*member) {
	waitFor("every produced record to be consumed", func() bool {
		for _, m := range members {
			m.rethrow()
		}
		return l.coversAll(end)
	}, func() string {
		var names []string
		for _, m := range members {
			names = append(names, m.String())
		}
		return l.missing(end) + "; members: " + strings.Join(names, " ")
	})
}

func split(a, b *member) bool {
	a.rethrow()
	b.rethrow()
	pa, pb := a.assigned(), b.assigned()
	union := make(map[int32]bool)
	for _, p := range append(slices.Clone(pa), pb...) {
		union[p] = true
	}
	return len(pa) > 0 && len(pb) > 0 && len(union) == groupPartitions && len(pa)+len(pb) == groupPartitions
}

// describeStable waits until the group is described Stable with members members, through the
// API of its protocol: DescribeGroups (classic) or ConsumerGroupDescribe (KIP-848); and
// requires ListGroups to report the group's type.
func describeStable(adm *kadm.Client, protocol, group string, members int) {
	last := ""
	waitFor(fmt.Sprintf("the group to be described Stable with %d members", members), func() bool {
		if protocol == "classic" {
			described, err := adm.DescribeGroups(ctx(), group)
			noErr(err, "DescribeGroups")
			g := described[group]
			noErr(g.Err, "DescribeGroups (group error)")
			last = fmt.Sprintf("state %s, protocol type %q, %d members", g.State, g.ProtocolType, len(g.Members))
			return g.State == "Stable" && len(g.Members) == members && g.ProtocolType == "consumer"
		}
		described, err := adm.DescribeConsumerGroups(ctx(), group)
		noErr(err, "ConsumerGroupDescribe")
		g := described[group]
		noErr(g.Err, "ConsumerGroupDescribe (group error)")
		assigned := 0
		for _, m := range g.Members {
			for _, ps := range m.Assignment {
				assigned += len(ps)
			}
		}
		last = fmt.Sprintf("state %s, %d members, %d partitions assigned", g.State, len(g.Members), assigned)
		return g.State == "Stable" && len(g.Members) == members && assigned == groupPartitions
	}, func() string { return last })
	listed, err := adm.ListGroups(ctx())
	noErr(err, "ListGroups")
	l, found := listed[group]
	require(found, "ListGroups lacks %s", group)
	require(l.GroupType == protocol, "ListGroups: %s has type %q, want %q", group, l.GroupType, protocol)
	ok("%s: group described %s; ListGroups type %q", protocol, last, l.GroupType)
}

func committedOffsets(adm *kadm.Client, group, topic string) map[int32]int64 {
	fetched, err := adm.FetchOffsets(ctx(), group)
	noErr(err, "OffsetFetch "+group)
	noErr(fetched.Error(), "OffsetFetch "+group+" (partition error)")
	out := make(map[int32]int64)
	for p, o := range fetched[topic] {
		if o.At >= 0 {
			out[p] = o.At
		}
	}
	return out
}

// ledger is every (partition, offset) consumed by any member, with how often.
type ledger struct {
	mu   sync.Mutex
	seen map[int32]map[int64]int
}

func (l *ledger) record(partition int32, offset int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen[partition] == nil {
		l.seen[partition] = make(map[int64]int)
	}
	l.seen[partition][offset]++
}

func (l *ledger) coversAll(end map[int32]int64) bool {
	return l.missing(end) == ""
}

// missing names the first offset below end not consumed yet in each partition, or "".
func (l *ledger) missing(end map[int32]int64) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, p := range slices.Sorted(maps.Keys(end)) {
		for o := int64(0); o < end[p]; o++ {
			if l.seen[p][o] == 0 {
				out = append(out, fmt.Sprintf("partition %d from offset %d (end %d)", p, o, end[p]))
				break
			}
		}
	}
	return strings.Join(out, ", ")
}

func (l *ledger) checkNoGap(end map[int32]int64) {
	gap := l.missing(end)
	require(gap == "", "offsets never consumed: %s", gap)
}

func (l *ledger) duplicates() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, offsets := range l.seen {
		for _, count := range offsets {
			n += count - 1
		}
	}
	return n
}

// member is one group consumer polling on its own goroutine. Rebalances wait while it handles
// a poll (kgo.BlockRebalanceOnPoll); it commits after each non-empty poll and when partitions
// are revoked, so a partition moves on with everything consumed committed.
type member struct {
	name   string
	cl     *kgo.Client
	ledger *ledger
	done   chan struct{}

	mu         sync.Mutex
	assignment map[int32]bool
	first      map[int32]int64
	perStage   map[int]int
	err        error
	stopping   bool
}

func startMember(bootstrap, protocol, group, topic, name string, l *ledger) *member {
	m := &member{name: name, ledger: l, done: make(chan struct{}), assignment: make(map[int32]bool),
		first: make(map[int32]int64), perStage: make(map[int]int)}
	opts := []kgo.Opt{
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(500 * time.Millisecond),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
			m.setAssigned(assigned[topic], true)
		}),
		kgo.OnPartitionsRevoked(func(c context.Context, cl *kgo.Client, revoked map[string][]int32) {
			// What was consumed is committed before the partitions move on: no duplicates.
			m.fail(cl.CommitUncommittedOffsets(c), "commit on revoke")
			m.setAssigned(revoked[topic], false)
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
			m.setAssigned(lost[topic], false)
		}),
	}
	if protocol == "consumer" {
		opts = append(opts, kgo.ServerSideBalancer())
	}
	m.cl = newClient(bootstrap, "franz-go-member-"+name, opts...)
	go m.loop()
	return m
}

func (m *member) loop() {
	defer close(m.done)
	for !m.isStopping() {
		pollCtx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		fetches := m.cl.PollRecords(pollCtx, maxPollRecords)
		cancel()
		for _, e := range fetches.Errors() {
			if !errors.Is(e.Err, context.DeadlineExceeded) && !errors.Is(e.Err, context.Canceled) {
				m.fail(e.Err, fmt.Sprintf("fetch %s-%d", e.Topic, e.Partition))
			}
		}
		records := fetches.Records()
		for _, r := range records {
			m.ledger.record(r.Partition, r.Offset)
			var stage, i int
			_, err := fmt.Sscanf(string(r.Value), "stage-%d-%d", &stage, &i)
			m.fail(err, "unexpected value "+string(r.Value))
			m.mu.Lock()
			if _, seen := m.first[r.Partition]; !seen {
				m.first[r.Partition] = r.Offset
			}
			m.perStage[stage]++
			m.mu.Unlock()
		}
		if len(records) > 0 {
			m.fail(m.cl.CommitUncommittedOffsets(ctx()), "commit")
		}
		m.cl.AllowRebalance()
	}
	m.fail(m.cl.CommitUncommittedOffsets(ctx()), "commit before leaving")
	// Leaves the group, so the others rebalance now rather than after a session timeout.
	m.cl.Close()
}

// stop commits, leaves the group and waits for the goroutine, bounded.
func (m *member) stop() {
	m.mu.Lock()
	m.stopping = true
	m.mu.Unlock()
	select {
	case <-m.done:
	case <-time.After(waitMax):
		fail("member %s did not leave within %v", m.name, waitMax)
	}
	m.rethrow()
}

func (m *member) isStopping() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stopping
}

func (m *member) fail(err error, what string) {
	if err == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err == nil {
		m.err = fmt.Errorf("%s: %w", what, err)
	}
}

// rethrow fails the calling check if the member's goroutine has failed.
func (m *member) rethrow() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		fail("member %s failed: %v", m.name, m.err)
	}
}

func (m *member) setAssigned(partitions []int32, assigned bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range partitions {
		if assigned {
			m.assignment[p] = true
		} else {
			delete(m.assignment, p)
		}
	}
}

func (m *member) assigned() []int32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Sorted(maps.Keys(m.assignment))
}

func (m *member) inStage(stage int) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.perStage[stage]
}

func (m *member) firstOffsets() map[int32]int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.first)
}

func (m *member) String() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := fmt.Sprintf("%s{assigned=%v, first offsets=%v", m.name, slices.Sorted(maps.Keys(m.assignment)), m.first)
	if m.err != nil {
		s += fmt.Sprintf(", error=%v", m.err)
	}
	return s + "}"
}
