//! The configuration file parser.

use crate::config::{Config, REDACTED};

/// Fuzz body: a TOML configuration file. An accepted one renders (`check-config`), and when it
/// holds no secret the rendering parses back to the same configuration.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = Config::from_toml_str(text) else {
        return;
    };
    let _ = config.warnings();
    let shown = config.to_redacted_toml();
    // The first line is a comment naming the placeholder; a secret shows in the rest.
    let body = shown.split_once('\n').map_or("", |(_, body)| body);
    if !body.contains(REDACTED) {
        let back = Config::from_toml_str(&shown)
            .unwrap_or_else(|e| panic!("the rendering does not parse back: {e}\n{shown}"));
        assert_eq!(
            back, config,
            "the rendering parses back to another configuration"
        );
    }
}
