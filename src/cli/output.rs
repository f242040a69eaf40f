//! How admin commands print: a human table by default, `--output json` for scripts.

use clap::ValueEnum;
use serde_json::Value;

#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    #[default]
    Table,
    Json,
}

/// Rows with the same columns, printed as a table (columns in `columns` order) or a JSON array.
pub fn print_rows(format: Format, columns: &[&str], rows: &[serde_json::Map<String, Value>]) {
    match format {
        Format::Json => println!(
            "{}",
            Value::Array(rows.iter().cloned().map(Value::Object).collect())
        ),
        Format::Table => print!("{}", table(columns, rows)),
    }
}

/// One JSON value as JSON, or as `key: value` lines.
pub fn print_object(format: Format, object: &serde_json::Map<String, Value>) {
    match format {
        Format::Json => println!("{}", Value::Object(object.clone())),
        Format::Table => {
            for (k, v) in object {
                println!("{k}: {}", cell(v));
            }
        }
    }
}

/// A table with upper-case headers, columns padded to their widest cell.
pub fn table(columns: &[&str], rows: &[serde_json::Map<String, Value>]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            columns
                .iter()
                .map(|c| r.get(*c).map(cell).unwrap_or_default())
                .collect()
        })
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].len())
                .max()
                .unwrap_or(0)
                .max(c.len())
        })
        .collect();
    let mut out = String::new();
    let line = |values: Vec<String>| -> String {
        let padded: Vec<String> = values
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    out.push_str(&line(columns.iter().map(|c| c.to_uppercase()).collect()));
    for row in cells {
        out.push_str(&line(row));
    }
    out
}

fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_string(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}
