//! The example configuration shipped in `contrib/config.toml` documents every
//! key at its default: it must parse, and parse to exactly the defaults, so
//! the file and the code cannot drift apart unnoticed.

use std::path::Path;

use cria_shim::config::Config;

#[test]
fn contrib_config_toml_is_the_default_configuration() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/config.toml");
    let text = std::fs::read_to_string(&path).expect("contrib/config.toml is in the repository");
    let parsed = Config::parse(&text, &path).expect("contrib/config.toml parses");
    assert_eq!(parsed, Config::default());
}

#[test]
fn contrib_config_toml_names_every_key() {
    // Every key criad knows appears in the example, set or commented out.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/config.toml");
    let text = std::fs::read_to_string(&path).expect("contrib/config.toml is in the repository");
    let defaults = toml::Value::try_from(Config::default()).expect("the defaults serialise");
    let mut missing = Vec::new();
    collect_keys(&defaults, "", &mut missing, &text);
    for optional in [
        "socket",
        "auth_file",
        "monitor_path",
        "tls_cert_file",
        "tls_key_file",
    ] {
        assert!(
            text.contains(&format!("# {optional} = ")),
            "contrib/config.toml should show the optional key {optional}"
        );
    }
    assert!(
        missing.is_empty(),
        "keys missing from contrib/config.toml: {missing:?}"
    );
}

fn collect_keys(value: &toml::Value, prefix: &str, missing: &mut Vec<String>, text: &str) {
    if let toml::Value::Table(table) = value {
        for (key, inner) in table {
            let dotted = format!("{prefix}{key}");
            let shown = match inner {
                toml::Value::Table(_) => text.contains(&format!("[{dotted}]")),
                _ => text
                    .lines()
                    .any(|l| l.trim_start().starts_with(&format!("{key} ="))),
            };
            if !shown {
                missing.push(dotted.clone());
            }
            collect_keys(inner, &format!("{dotted}."), missing, text);
        }
    }
}
