// Command franzgo drives franz-go (github.com/twmb/franz-go: kgo and kadm), the Go client that
// follows Kafka's newest protocol versions most closely, against one broker:
//
//	franzgo <bootstrap> admin
//	franzgo <bootstrap> produce-consume [default|none|gzip|snappy|lz4|zstd]...
//	franzgo <bootstrap> group classic|consumer
//
// Each subcommand prints one "ok ..." line per check, then "PASS <subcommand and arguments>"
// and exits 0; the first failed check prints "FAIL ..." and exits 1. tests/go_client.rs runs
// these against the real broker.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// waitMax bounds any single wait for the broker: a request, a polled condition, a consume loop.
const waitMax = 30 * time.Second

// pollInterval is how often a polled condition is looked at again.
const pollInterval = 100 * time.Millisecond

// failure is what a failed check panics with; main turns it into the FAIL line.
type failure struct{ message string }

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: franzgo <bootstrap> admin | produce-consume [codec...] | group classic|consumer")
		os.Exit(2)
	}
	bootstrap, command, args := os.Args[1], os.Args[2], os.Args[3:]
	started := time.Now()
	defer func() {
		if r := recover(); r != nil {
			f, isFailure := r.(failure)
			if !isFailure {
				panic(r)
			}
			fmt.Printf("FAIL %s after %v: %s\n", strings.Join(os.Args[2:], " "), time.Since(started).Round(time.Millisecond), f.message)
			os.Exit(1)
		}
	}()
	switch command {
	case "admin":
		runAdmin(bootstrap)
	case "produce-consume":
		if len(args) == 0 {
			args = []string{"default"}
		}
		for _, codec := range args {
			runProduceConsume(bootstrap, codec)
		}
	case "group":
		if len(args) != 1 || (args[0] != "classic" && args[0] != "consumer") {
			fail("group takes one argument, classic or consumer, not %q", args)
		}
		runGroup(bootstrap, args[0])
	default:
		fail("unknown subcommand %q", command)
	}
	fmt.Printf("PASS %s (%v)\n", strings.Join(os.Args[2:], " "), time.Since(started).Round(time.Millisecond))
}

func fail(format string, args ...any) {
	panic(failure{fmt.Sprintf(format, args...)})
}

func require(condition bool, format string, args ...any) {
	if !condition {
		fail(format, args...)
	}
}

// noErr fails with what when err is not nil.
func noErr(err error, what string) {
	if err != nil {
		fail("%s: %v", what, err)
	}
}

// isErr fails unless err is (or wraps) want: the Kafka error code the broker should send.
func isErr(err, want error, what string) {
	if !errors.Is(err, want) {
		fail("%s: expected %v, got %v", what, want, err)
	}
}

func ok(format string, args ...any) {
	fmt.Printf("ok "+format+"\n", args...)
}

// waitFor polls condition until it holds; fails after waitMax naming what and the last state.
func waitFor(what string, condition func() bool, state func() string) {
	deadline := time.Now().Add(waitMax)
	for !condition() {
		if time.Now().After(deadline) {
			fail("timed out after %v waiting for %s; last state: %s", waitMax, what, state())
		}
		time.Sleep(pollInterval)
	}
}

// ctx is a context bounded by waitMax, for one request.
func ctx() context.Context {
	c, cancel := context.WithTimeout(context.Background(), waitMax)
	time.AfterFunc(waitMax, cancel)
	return c
}

// knownFailures are Sluice gaps this program found that are not fixed yet: id -> reason. A check
// run through known prints KNOWN-FAILURE with the reason instead of failing; once it passes,
// the subcommand fails until the entry is removed, so a fix is noticed.
var knownFailures = map[string]string{}

// known runs check; see knownFailures.
func known(id string, check func()) {
	reason, listed := knownFailures[id]
	require(listed, "no known failure %s", id)
	passed := func() (passed bool) {
		defer func() {
			if r := recover(); r != nil {
				f, isFailure := r.(failure)
				if !isFailure {
					panic(r)
				}
				fmt.Printf("KNOWN-FAILURE %s: %s; this run: %s\n", id, reason, f.message)
			}
		}()
		check()
		return true
	}()
	require(!passed, "known failure %s passes now: remove it from knownFailures", id)
}

// newClient is a kgo client for bootstrap with the settings every client here shares.
func newClient(bootstrap, clientID string, opts ...kgo.Opt) *kgo.Client {
	base := []kgo.Opt{
		kgo.SeedBrokers(bootstrap),
		kgo.ClientID(clientID),
		// Bounded, so a broker that never answers fails the check instead of hanging it.
		kgo.RequestTimeoutOverhead(10 * time.Second),
		kgo.RetryTimeout(waitMax),
	}
	cl, err := kgo.NewClient(append(base, opts...)...)
	noErr(err, "kgo.NewClient "+clientID)
	return cl
}

// uniqueName is a topic or group name unique to this run.
func uniqueName(prefix string) string {
	return fmt.Sprintf("%s-%d-%x", prefix, os.Getpid(), time.Now().UnixNano()&0xffffffff)
}
