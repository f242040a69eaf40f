//! Client properties: `k=v` pairs from the command line or a properties file, turned into an
//! rdkafka `ClientConfig`. Kafka's Java property names that librdkafka spells the same pass through.

use anyhow::{bail, Context, Result};
use rdkafka::ClientConfig;
use std::path::Path;

/// Parses `k=v` strings; the value may itself contain `=`.
pub fn parse_pairs(pairs: &[String]) -> Result<Vec<(String, String)>> {
    pairs
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => {
                Ok((key.trim().to_string(), value.trim().to_string()))
            }
            _ => bail!("expected key=value, got {pair:?}"),
        })
        .collect()
}

/// Reads a Java-style properties file: `k=v` lines, `#` and `!` comments, blank lines.
pub fn read_properties_file(path: &Path) -> Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading properties file {}", path.display()))?;
    let lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#') && !line.starts_with('!'))
        .map(str::to_string)
        .collect();
    parse_pairs(&lines)
}

/// Builds a client configuration: `defaults` first, then the file, then the command-line pairs.
/// `bootstrap.servers` falls back to `bootstrap_server` when no property sets it.
pub fn client_config(
    bootstrap_server: &str,
    defaults: &[(&str, &str)],
    file: Option<&Path>,
    pairs: &[String],
) -> Result<(ClientConfig, Vec<(String, String)>)> {
    let mut effective: Vec<(String, String)> = defaults
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    if let Some(path) = file {
        effective.extend(read_properties_file(path)?);
    }
    effective.extend(parse_pairs(pairs)?);
    if !effective.iter().any(|(key, _)| key == "bootstrap.servers") {
        effective.insert(0, ("bootstrap.servers".into(), bootstrap_server.into()));
    }
    let mut config = ClientConfig::new();
    for (key, value) in &effective {
        config.set(key, value);
    }
    Ok((config, effective))
}

/// The broker list a configuration will use (for the admin client and the report).
pub fn bootstrap_of(effective: &[(String, String)]) -> String {
    effective
        .iter()
        .rev()
        .find(|(key, _)| key == "bootstrap.servers")
        .map(|(_, value)| value.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_pairs_win_and_bootstrap_falls_back() {
        let (_, effective) = client_config(
            "127.0.0.1:1",
            &[("acks", "1")],
            None,
            &["acks=all".into(), "linger.ms=5".into()],
        )
        .unwrap();
        assert_eq!(bootstrap_of(&effective), "127.0.0.1:1");
        assert_eq!(effective.last().unwrap(), &("linger.ms".into(), "5".into()));
        let acks: Vec<_> = effective.iter().filter(|(k, _)| k == "acks").collect();
        assert_eq!(acks.last().unwrap().1, "all");
    }

    #[test]
    fn bootstrap_servers_property_wins_over_flag() {
        let (_, effective) =
            client_config("127.0.0.1:1", &[], None, &["bootstrap.servers=h:2".into()]).unwrap();
        assert_eq!(bootstrap_of(&effective), "h:2");
    }

    #[test]
    fn rejects_pair_without_equals() {
        assert!(parse_pairs(&["acks".into()]).is_err());
    }
}
