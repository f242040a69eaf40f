//! Transactions end to end with librdkafka (rdkafka crate) against the real broker binary:
//! commit, abort, commit again; read_committed sees only committed records and read_uncommitted
//! all; an open transaction holds read_committed back; a second producer with the same
//! transactional id fences the first; a transaction open past its timeout is aborted; offsets
//! sent to a transaction are visible only once it commits; a kill -9 in the middle of a
//! transaction is recovered from the coordinator's log.

mod common;

use std::collections::HashMap;
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};

use common::{unique_topic, Broker, BrokerOpts};

/// Few transaction state partitions, a fast timeout sweep: the settings every test here uses.
fn opts() -> BrokerOpts {
    BrokerOpts {
        cores: 2,
        ..BrokerOpts::default()
    }
    .with("transaction.state.log.num.partitions", "4")
    .with("offsets.topic.num.partitions", "4")
    .with(
        "transaction.abort.timed.out.transaction.cleanup.interval.ms",
        "200",
    )
}

const TXN_TIMEOUT: Duration = Duration::from_secs(30);

fn txn_producer(b: &Broker, id: &str, extra: &[(&str, &str)]) -> BaseProducer {
    let mut config = b.client_config();
    config
        .set("transactional.id", id)
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000");
    for (k, v) in extra {
        config.set(*k, *v);
    }
    let p: BaseProducer = config.create().expect("create transactional producer");
    p.init_transactions(TXN_TIMEOUT)
        .unwrap_or_else(|e| panic!("init_transactions: {e}\n{}", b.stderr_tail()));
    p
}

fn send(p: &BaseProducer, topic: &str, values: &[String]) {
    for v in values {
        loop {
            match p.send(BaseRecord::<str, str>::to(topic).partition(0).payload(v)) {
                Ok(()) => break,
                Err((e, _)) => {
                    eprintln!("send: {e}");
                    p.poll(Duration::from_millis(50));
                }
            }
        }
    }
    p.flush(Duration::from_secs(30)).expect("flush");
}

fn values(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// Every value of `topic`-0 from offset 0 that `isolation` shows, read until `quiet` passes
/// with nothing new (and at least until `expect` values came).
fn read_values(
    b: &Broker,
    topic: &str,
    isolation: &str,
    expect: usize,
    quiet: Duration,
) -> Vec<String> {
    let c: BaseConsumer = b.consumer(&[("isolation.level", isolation)]);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("offset");
    c.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last_new = Instant::now();
    while Instant::now() < deadline {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                out.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string());
                last_new = Instant::now();
            }
            Some(Err(e)) => panic!("consume {topic} ({isolation}): {e}\n{}", b.stderr_tail()),
            None => {
                if out.len() >= expect && last_new.elapsed() >= quiet {
                    break;
                }
            }
        }
    }
    out
}

/// The offset ListOffsets gives as the end of `topic`-0 for `isolation` (the last stable
/// offset for read_committed).
fn end_offset(b: &Broker, topic: &str, isolation: &str) -> i64 {
    let c: BaseConsumer = b.consumer(&[("isolation.level", isolation)]);
    c.fetch_watermarks(topic, 0, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("watermarks: {e}\n{}", b.stderr_tail()))
        .1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_abort_commit_and_read_committed_sees_only_committed_records() {
    let b = Broker::start_with(opts());
    let topic = unique_topic("txn-basic");
    b.create_topic(&topic, 1, &[]).await;
    let p = txn_producer(&b, "txn-basic", &[]);

    p.begin_transaction().expect("begin");
    send(&p, &topic, &values("c1", 10));
    p.commit_transaction(TXN_TIMEOUT).expect("commit 1");

    p.begin_transaction().expect("begin");
    send(&p, &topic, &values("a", 10));
    p.abort_transaction(TXN_TIMEOUT).expect("abort");

    p.begin_transaction().expect("begin");
    send(&p, &topic, &values("c2", 10));
    p.commit_transaction(TXN_TIMEOUT).expect("commit 2");

    let committed = read_values(&b, &topic, "read_committed", 20, Duration::from_millis(500));
    let mut want = values("c1", 10);
    want.extend(values("c2", 10));
    assert_eq!(committed, want, "read_committed");

    let all = read_values(
        &b,
        &topic,
        "read_uncommitted",
        30,
        Duration::from_millis(500),
    );
    let mut want_all = values("c1", 10);
    want_all.extend(values("a", 10));
    want_all.extend(values("c2", 10));
    assert_eq!(all, want_all, "read_uncommitted");

    // 30 records and 3 markers; every transaction ended, so the LSO is the log end.
    assert_eq!(end_offset(&b, &topic, "read_uncommitted"), 33);
    assert_eq!(end_offset(&b, &topic, "read_committed"), 33);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_transaction_holds_read_committed_back_until_it_commits() {
    let b = Broker::start_with(opts());
    let topic = unique_topic("txn-open");
    b.create_topic(&topic, 1, &[]).await;
    // A committed record before, so read_committed has something below the open transaction.
    let plain: BaseProducer = b.client_config().create().expect("producer");
    send(&plain, &topic, &["before".to_string()]);

    let p = txn_producer(&b, "txn-open", &[]);
    p.begin_transaction().expect("begin");
    send(&p, &topic, &values("open", 5));
    // Non-transactional records after the open transaction's first record wait for it too.
    send(&plain, &topic, &["after".to_string()]);

    assert_eq!(end_offset(&b, &topic, "read_uncommitted"), 7);
    assert_eq!(
        end_offset(&b, &topic, "read_committed"),
        1,
        "LSO at the open transaction"
    );
    let seen = read_values(&b, &topic, "read_committed", 1, Duration::from_secs(1));
    assert_eq!(seen, vec!["before".to_string()]);

    p.commit_transaction(TXN_TIMEOUT).expect("commit");
    let mut want = vec!["before".to_string()];
    want.extend(values("open", 5));
    want.push("after".to_string());
    let seen = read_values(&b, &topic, "read_committed", 7, Duration::from_millis(500));
    assert_eq!(seen, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_producer_with_the_same_transactional_id_fences_the_first() {
    let b = Broker::start_with(opts());
    let topic = unique_topic("txn-fence");
    b.create_topic(&topic, 1, &[]).await;
    let first = txn_producer(&b, "txn-fence", &[]);
    first.begin_transaction().expect("begin");
    send(&first, &topic, &values("zombie", 5));

    // The new instance aborts the first one's open transaction and takes a higher epoch.
    let second = txn_producer(&b, "txn-fence", &[]);
    let err = first
        .commit_transaction(TXN_TIMEOUT)
        .expect_err("the fenced producer's commit must fail");
    match &err {
        rdkafka::error::KafkaError::Transaction(e) => {
            assert!(
                e.is_fatal() || e.txn_requires_abort(),
                "fenced commit error: {e:?}"
            )
        }
        other => panic!("fenced commit: unexpected error {other:?}"),
    }

    second.begin_transaction().expect("begin");
    send(&second, &topic, &values("live", 3));
    second.commit_transaction(TXN_TIMEOUT).expect("commit");
    let seen = read_values(&b, &topic, "read_committed", 3, Duration::from_millis(500));
    assert_eq!(seen, values("live", 3), "the zombie's records are aborted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_open_past_its_timeout_is_aborted() {
    let b = Broker::start_with(opts());
    let topic = unique_topic("txn-timeout");
    b.create_topic(&topic, 1, &[]).await;
    let p = txn_producer(
        &b,
        "txn-timeout",
        &[
            ("transaction.timeout.ms", "1500"),
            ("message.timeout.ms", "1500"),
            ("socket.timeout.ms", "1500"),
        ],
    );
    p.begin_transaction().expect("begin");
    send(&p, &topic, &values("late", 3));
    assert_eq!(end_offset(&b, &topic, "read_committed"), 0);

    // The coordinator aborts it: the abort marker moves the LSO past the records.
    let deadline = Instant::now() + Duration::from_secs(20);
    while end_offset(&b, &topic, "read_committed") < 4 {
        assert!(
            Instant::now() < deadline,
            "the expired transaction was not aborted\n{}",
            b.stderr_tail()
        );
        thread::sleep(Duration::from_millis(200));
    }
    assert!(read_values(&b, &topic, "read_committed", 0, Duration::from_millis(500)).is_empty());
    assert!(
        p.commit_transaction(TXN_TIMEOUT).is_err(),
        "committing an aborted transaction must fail"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_sent_to_a_transaction_are_committed_only_with_it() {
    let b = Broker::start_with(opts());
    let topic = unique_topic("txn-offsets");
    b.create_topic(&topic, 1, &[]).await;
    let group = format!("{topic}-group");
    let consumer: BaseConsumer = b.consumer(&[("group.id", group.as_str())]);
    let p = txn_producer(&b, "txn-offsets", &[]);

    let committed = |c: &BaseConsumer| -> Option<i64> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&topic, 0);
        match c.committed_offsets(tpl, Duration::from_secs(5)) {
            Ok(list) => match list.find_partition(&topic, 0).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => Some(o),
                _ => None,
            },
            Err(_) => None,
        }
    };

    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset(&topic, 0, Offset::Offset(5))
        .expect("offset");
    p.begin_transaction().expect("begin");
    send(&p, &topic, &values("out", 1));
    p.send_offsets_to_transaction(
        &offsets,
        &consumer.group_metadata().expect("group metadata"),
        TXN_TIMEOUT,
    )
    .unwrap_or_else(|e| panic!("send_offsets_to_transaction: {e}\n{}", b.stderr_tail()));
    assert_eq!(committed(&consumer), None, "pending offsets are invisible");
    p.abort_transaction(TXN_TIMEOUT).expect("abort");
    assert_eq!(committed(&consumer), None, "aborted offsets are dropped");

    p.begin_transaction().expect("begin");
    send(&p, &topic, &values("out", 1));
    p.send_offsets_to_transaction(
        &offsets,
        &consumer.group_metadata().expect("group metadata"),
        TXN_TIMEOUT,
    )
    .expect("send offsets");
    p.commit_transaction(TXN_TIMEOUT).expect("commit");
    let deadline = Instant::now() + Duration::from_secs(20);
    while committed(&consumer) != Some(5) {
        assert!(
            Instant::now() < deadline,
            "committed offsets not visible after the commit\n{}",
            b.stderr_tail()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_transaction_then_restart_aborts_it_and_the_lso_advances() {
    let mut b = Broker::start_with(opts());
    let topic = unique_topic("txn-kill");
    b.create_topic(&topic, 1, &[]).await;
    {
        let p = txn_producer(
            &b,
            "txn-kill",
            &[
                ("transaction.timeout.ms", "3000"),
                ("message.timeout.ms", "3000"),
                ("socket.timeout.ms", "3000"),
            ],
        );
        p.begin_transaction().expect("begin");
        send(&p, &topic, &values("lost", 4));
        // Another transaction, committed, of a different id: must survive as committed.
        let q = txn_producer(&b, "txn-kill-ok", &[]);
        q.begin_transaction().expect("begin");
        send(&q, &topic, &values("kept", 2));
        q.commit_transaction(TXN_TIMEOUT).expect("commit");
        b.kill9();
    }
    b.start_again();
    // After the restart the coordinator replays its log, finds the first transaction open,
    // and aborts it once its timeout passes; the LSO then reaches the log end.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (end, lso) = (
            end_offset(&b, &topic, "read_uncommitted"),
            end_offset(&b, &topic, "read_committed"),
        );
        if end > 6 && lso == end {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "LSO {lso} never reached the end {end}\n{}",
            b.stderr_tail()
        );
        thread::sleep(Duration::from_millis(200));
    }
    let seen = read_values(&b, &topic, "read_committed", 2, Duration::from_millis(500));
    assert_eq!(seen, values("kept", 2));
    // The id is usable again.
    let p = txn_producer(&b, "txn-kill", &[]);
    p.begin_transaction().expect("begin");
    send(&p, &topic, &values("again", 1));
    p.commit_transaction(TXN_TIMEOUT).expect("commit");
    let seen = read_values(&b, &topic, "read_committed", 3, Duration::from_millis(500));
    let mut want = values("kept", 2);
    want.extend(values("again", 1));
    assert_eq!(seen, want);
    // The per-record map of what read_uncommitted shows: everything, markers hidden.
    let all = read_values(
        &b,
        &topic,
        "read_uncommitted",
        7,
        Duration::from_millis(500),
    );
    let counts: HashMap<&str, usize> = all.iter().fold(HashMap::new(), |mut m, v| {
        *m.entry(v.split('-').next().unwrap_or("")).or_default() += 1;
        m
    });
    assert_eq!(counts.get("lost"), Some(&4));
}
