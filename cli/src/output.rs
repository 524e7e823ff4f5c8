//! Rendering results as an aligned table, JSON or YAML (`-o`).

use std::io::Write;

use anyhow::Context;
use clap::ValueEnum;
use comfy_table::{presets, CellAlignment, ContentArrangement, Table};
use serde::Serialize;

/// The `-o/--output` choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    #[default]
    Table,
    /// Pretty-printed JSON.
    Json,
    /// YAML.
    Yaml,
}

/// Writes text to stdout; a closed pipe comes back as an error that `main` ends quietly on.
pub fn print_text(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("writing to stdout")
}

/// Writes one line to stdout (see [`print_text`]).
pub fn print_line(line: impl std::fmt::Display) -> anyhow::Result<()> {
    print_text(&format!("{line}\n"))
}

/// True when an error is stdout's reader having gone away (`cria images | head -1`).
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Prints `value` as JSON or YAML to stdout.
pub fn print_structured<T: Serialize>(format: Format, value: &T) -> anyhow::Result<()> {
    let text = match format {
        Format::Yaml => serde_norway::to_string(value).context("encoding yaml")?,
        Format::Json | Format::Table => {
            let mut s = serde_json::to_string_pretty(value).context("encoding json")?;
            s.push('\n');
            s
        }
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("writing to stdout")
}

/// Renders rows under a header, docker style: no borders, columns three spaces apart.
pub fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut t = Table::new();
    t.load_style(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.iter().copied());
    for row in rows {
        t.add_row(row);
    }
    let last = header.len().saturating_sub(1);
    for (i, col) in t.column_iter_mut().enumerate() {
        col.set_padding((0, if i == last { 0 } else { 3 }));
        col.set_cell_alignment(CellAlignment::Left);
    }
    let mut s: String = t
        .lines()
        .map(|l| l.trim_end().to_string())
        .collect::<Vec<_>>()
        .join("\n");
    s.push('\n');
    s
}

/// Prints a table to stdout.
pub fn print_table(header: &[&str], rows: Vec<Vec<String>>) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(table(header, rows).as_bytes())
        .context("writing to stdout")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns_without_borders() {
        let t = table(
            &["ID", "NAME"],
            vec![
                vec!["abc".into(), "web".into()],
                vec!["d".into(), "database".into()],
            ],
        );
        assert_eq!(t, "ID    NAME\nabc   web\nd     database\n");
    }
}
