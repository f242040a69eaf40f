//! `sluice-bench`: producer, consumer and end-to-end benchmarks for Sluice (or any Kafka broker),
//! driven by librdkafka through the `rdkafka` crate so the figures compare with what Kafka users
//! measure with `kafka-producer-perf-test` and `kafka-consumer-perf-test`.
//!
//! Every subcommand prints Kafka-style output on stdout and can save a JSON report (`--report`)
//! and a latency-by-percentile SVG plot (`--plot`).

mod admin;
mod cli;
mod consumer_perf;
mod e2e_latency;
mod group_bench;
mod log_bench;
mod producer_perf;
mod props;
mod report;
mod summarize;
mod throttle;
mod verify;

use anyhow::Result;
use clap::Parser;

fn main() -> Result<()> {
    let cli = cli::Cli::parse();
    match cli.command {
        cli::Command::ProducerPerf(args) => producer_perf::run(&args),
        cli::Command::ConsumerPerf(args) => consumer_perf::run(&args),
        cli::Command::E2eLatency(args) => e2e_latency::run(&args),
        cli::Command::Summarize(args) => summarize::run(&args),
        cli::Command::LogAppend(args) => log_bench::append::run(&args),
        cli::Command::LogStartup(args) => log_bench::startup::run(&args),
        cli::Command::LogRecovery(args) => log_bench::recovery::run(&args),
        cli::Command::LogMemory(args) => log_bench::memory::run(&args),
        cli::Command::LogPopulate(args) => log_bench::populate::run(&args),
        cli::Command::LogRecoveryWrite(args) => log_bench::recovery::write_tail(&args),
        cli::Command::GroupRebalance(args) => group_bench::rebalance::run(&args),
        cli::Command::GroupCommits(args) => group_bench::commits::run(&args),
        cli::Command::Verify(args) => {
            // 0: no error-class violation; 1: one (the report names it); 2: could not check.
            let code = match verify::run(&args) {
                Ok(true) => 0,
                Ok(false) => 1,
                Err(error) => {
                    eprintln!("verify could not run: {error:#}");
                    2
                }
            };
            let _ = std::io::Write::flush(&mut std::io::stdout());
            std::process::exit(code);
        }
    }
}
