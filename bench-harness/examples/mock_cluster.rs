//! librdkafka's in-process mock cluster, printing `LISTENING <bootstrap>` like `sluice serve`,
//! so the harness and scripts/bench.sh can be checked without a working broker:
//! `cargo run -p bench-harness --example mock_cluster`. Runs until killed.
//! Its figures measure librdkafka's mock, never Sluice; do not record them.

use rdkafka::mocking::MockCluster;

fn main() -> anyhow::Result<()> {
    let cluster = MockCluster::new(1)?;
    println!("LISTENING {}", cluster.bootstrap_servers());
    loop {
        std::thread::park();
    }
}
