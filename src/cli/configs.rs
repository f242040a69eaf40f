//! `sluice config describe|alter` for topics and brokers: Kafka's `kafka-configs.sh`
//! (DescribeConfigs, IncrementalAlterConfigs).

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{DescribeConfigsRequest, IncrementalAlterConfigsRequest};
use serde_json::json;

use super::client::{check_with, Client};
use super::output::{print_rows, Format};
use super::topic::{pairs, row, sb};

/// Kafka's ConfigResource types.
pub const TOPIC: i8 = 2;
pub const BROKER: i8 = 4;

#[derive(Args, Debug)]
pub struct ConfigArgs {
    /// `host:port` of a broker.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub bootstrap_server: String,
    /// `table` (default) or `json`.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    #[command(subcommand)]
    pub command: ConfigCommand,
}

/// Which resource: `--topic NAME` or `--broker ID`.
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct Entity {
    #[arg(long)]
    pub topic: Option<String>,
    #[arg(long)]
    pub broker: Option<i32>,
}

impl Entity {
    fn resource(&self) -> (i8, String) {
        match (&self.topic, self.broker) {
            (Some(t), _) => (TOPIC, t.clone()),
            (None, Some(b)) => (BROKER, b.to_string()),
            (None, None) => (BROKER, String::new()),
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Show a topic's or broker's configs (only those set, unless `--all`).
    Describe {
        #[command(flatten)]
        entity: Entity,
        #[arg(long)]
        all: bool,
    },
    /// Set or delete configs.
    Alter {
        #[command(flatten)]
        entity: Entity,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        #[arg(long = "delete", value_name = "KEY")]
        delete: Vec<String>,
    },
}

/// Entry point of `sluice config …`.
pub fn run(args: ConfigArgs) -> anyhow::Result<()> {
    let mut client = Client::connect(&args.bootstrap_server)?;
    match args.command {
        ConfigCommand::Describe { entity, all } => {
            let (kind, name) = entity.resource();
            describe(&mut client, args.output, kind, &name, all)
        }
        ConfigCommand::Alter {
            entity,
            set,
            delete,
        } => {
            let (kind, name) = entity.resource();
            alter(&mut client, args.output, kind, &name, &set, &delete)
        }
    }
}

/// Kafka's ConfigSource names.
fn source_name(source: i8) -> &'static str {
    match source {
        1 => "DYNAMIC_TOPIC_CONFIG",
        2 => "DYNAMIC_BROKER_CONFIG",
        3 => "DYNAMIC_DEFAULT_BROKER_CONFIG",
        4 => "STATIC_BROKER_CONFIG",
        5 => "DEFAULT_CONFIG",
        6 => "DYNAMIC_BROKER_LOGGER_CONFIG",
        7 => "CLIENT_METRICS_CONFIG",
        8 => "GROUP_CONFIG",
        _ => "UNKNOWN",
    }
}

fn describe(
    client: &mut Client,
    out: Format,
    kind: i8,
    name: &str,
    all: bool,
) -> anyhow::Result<()> {
    let req =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(kind)
            .with_resource_name(sb(name))
            .with_configuration_keys(None)]);
    let resp = client.send(&req, 4)?;
    let r = resp
        .results
        .first()
        .context("DescribeConfigs answered no resource")?;
    check_with(
        r.error_code,
        &format!("describing configs of {name}"),
        r.error_message.as_deref(),
    )?;
    let mut rows: Vec<_> = r
        .configs
        .iter()
        .filter(|c| all || c.config_source != 5)
        .map(|c| {
            let value = if c.is_sensitive {
                None
            } else {
                c.value.as_ref().map(|v| v.to_string())
            };
            row(json!({"name": c.name.to_string(), "value": value,
                "source": source_name(c.config_source), "read_only": c.read_only}))
        })
        .collect();
    rows.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    print_rows(out, &["name", "value", "source", "read_only"], &rows);
    Ok(())
}

/// IncrementalAlterConfigs: `set` pairs (SET) and `delete` keys (DELETE) of one resource.
pub fn alter(
    client: &mut Client,
    out: Format,
    kind: i8,
    name: &str,
    set: &[String],
    delete: &[String],
) -> anyhow::Result<()> {
    let mut configs: Vec<AlterableConfig> = pairs(set)?
        .into_iter()
        .map(|(k, v)| {
            AlterableConfig::default()
                .with_name(sb(&k))
                .with_config_operation(0)
                .with_value(Some(sb(&v)))
        })
        .collect();
    configs.extend(delete.iter().map(|k| {
        AlterableConfig::default()
            .with_name(sb(k))
            .with_config_operation(1)
    }));
    if configs.is_empty() {
        bail!("nothing to change: give --set KEY=VALUE or --delete KEY");
    }
    let changed = configs.len();
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(kind)
            .with_resource_name(sb(name))
            .with_configs(configs),
    ]);
    let resp = client.send(&req, 1)?;
    let r = resp
        .responses
        .first()
        .context("IncrementalAlterConfigs answered no resource")?;
    check_with(
        r.error_code,
        &format!("altering configs of {name}"),
        r.error_message.as_deref(),
    )?;
    print_rows(
        out,
        &["resource", "changed", "result"],
        &[row(
            json!({"resource": name, "changed": changed, "result": "altered"}),
        )],
    );
    Ok(())
}
