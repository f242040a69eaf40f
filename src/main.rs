use clap::Parser;
use sluice::cli::{Cli, Command};
use sluice::config::BrokerConfig;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // SLUICE_LOG, else RUST_LOG, else info.
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if log_format(&cli) == "json" {
        // One JSON object per line for log shippers (`log.format=json`).
        logs.json().init();
    } else {
        logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
    fail_fast_on_panic();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Group(args) => sluice::cli::group::run(args),
        Command::Topic(args) => sluice::cli::topic::run(args),
        Command::Cluster(args) => sluice::cli::cluster::run(args),
        Command::Config(args) => sluice::cli::configs::run(args),
        Command::Partition(args) => sluice::cli::partition::run(args),
        Command::Produce(args) => sluice::cli::data::produce(args),
        Command::Consume(args) => sluice::cli::data::consume(args),
        Command::Log(args) => sluice::cli::log_dump::run(args),
        Command::Format(args) => format(args),
        Command::RandomUuid => {
            println!(
                "{}",
                sluice::model::kafka_uuid_string(&uuid::Uuid::new_v4())
            );
            Ok(())
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `log.format` (`plain` or `json`), read before logging starts: `--override log.format=…`,
/// else `SLUICE_LOG_FORMAT`, else the `--config` file's `log.format`, else plain.
fn log_format(cli: &Cli) -> String {
    let Command::Serve(args) = &cli.command else {
        return std::env::var("SLUICE_LOG_FORMAT").unwrap_or_default();
    };
    let from_flags = args.property_overrides().ok().and_then(|o| {
        o.into_iter()
            .rev()
            .find(|(k, _)| k == "log.format")
            .map(|(_, v)| v)
    });
    let from_file = || {
        let text = std::fs::read_to_string(args.config.as_deref()?).ok()?;
        sluice::config::parse_properties(&text)
            .into_iter()
            .rev()
            .find(|(k, _)| k == "log.format")
            .map(|(_, v)| v)
    };
    from_flags
        .or_else(|| std::env::var("SLUICE_LOG_FORMAT").ok())
        .or_else(from_file)
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// A panic anywhere ends the process (STYLE: fail fast). Without this a panic unwinds out of
/// one shard's executor and kills only that thread: the broker keeps accepting connections
/// while every call routed to the dead shard waits forever. Aborting lets a supervisor restart
/// the process and recovery run. The default hook prints the message (and backtrace) first.
fn fail_fast_on_panic() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current().name().unwrap_or("?").to_string();
        tracing::error!(thread = %thread, panic = %info, "panic: aborting the process");
        default_hook(info);
        std::process::abort();
    }));
}

/// `sluice format`: writes meta.properties into the configured data directory.
fn format(args: sluice::cli::FormatArgs) -> anyhow::Result<()> {
    let file_text = read_config_file(args.config.as_deref())?;
    let mut overrides = Vec::new();
    if let Some(d) = &args.data_dir {
        overrides.push(("log.dirs".to_string(), d.display().to_string()));
    }
    if let Some(n) = args.node_id {
        overrides.push(("node.id".to_string(), n.to_string()));
    }
    let config = BrokerConfig::build(file_text.as_deref(), &[], &overrides, Some(1))?;
    let cluster_id = match args.cluster_id {
        Some(id) => id,
        None if !config.get("cluster.id").is_empty() => config.get("cluster.id").to_string(),
        None => anyhow::bail!("--cluster-id is required (or cluster.id in the config)"),
    };
    if !sluice::cluster::meta::valid_cluster_id(&cluster_id) {
        anyhow::bail!("cluster id {cluster_id:?} is not a Kafka uuid (22 characters of URL-safe base64; `sluice random-uuid` makes one)");
    }
    let meta = sluice::cluster::meta::format(
        &config.data_dir,
        &cluster_id,
        config.node_id,
        args.ignore_formatted,
    )?;
    println!(
        "Formatted {} with cluster.id {} and node.id {}.",
        config.data_dir.display(),
        meta.cluster_id,
        meta.node_id
    );
    Ok(())
}

fn read_config_file(path: Option<&std::path::Path>) -> anyhow::Result<Option<String>> {
    match path {
        Some(path) => Ok(Some(std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!("cannot read config file {}: {e}", path.display())
        })?)),
        None => Ok(None),
    }
}

fn serve(args: sluice::cli::ServeArgs) -> anyhow::Result<()> {
    let file_text = read_config_file(args.config.as_deref())?;
    let env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("SLUICE_"))
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "SLUICE_DATA_DIR"
                    | "SLUICE_LISTEN"
                    | "SLUICE_ADVERTISED_LISTENER"
                    | "SLUICE_CORES"
                    | "SLUICE_NODE_ID"
                    | "SLUICE_CONFIG"
                    | "SLUICE_LOG"
                    | "SLUICE_BIN"
            )
        })
        .collect();
    let overrides = args.property_overrides().map_err(anyhow::Error::msg)?;
    let config = BrokerConfig::build(file_text.as_deref(), &env, &overrides, args.cores)?;
    sluice::runtime::run(config)
}
