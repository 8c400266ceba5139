//! The environment overlay: which variable sets which field, and how it is parsed.
//!
//! One table ([`VARS`]) drives loading, error messages and the list of fields an operator
//! set through the environment, so adding a variable is one entry here.

use std::net::SocketAddr;

use super::{Config, ConfigError, LogFormat, Secret};

/// One environment variable and the field it overrides.
pub(super) struct Var {
    /// The variable's name, as in the README's Configuration table.
    pub name: &'static str,
    /// The field it sets, spelled as in the TOML file (`redis.url`).
    pub field: &'static str,
    /// Secret variables never have their value quoted in an error.
    pub secret: bool,
    /// Parses the value into the config; `Err` says what was expected.
    apply: fn(&mut Config, String) -> Result<(), String>,
}

/// A comma-separated list, entries trimmed, empty ones dropped.
fn comma_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Every variable the gateway reads (besides `RUST_LOG`, which the tracing filter reads).
pub(super) const VARS: &[Var] = &[
    Var {
        name: "GATEWAY_CHAIN_ENDPOINTS",
        field: "chain.endpoints",
        secret: false,
        apply: |c, v| {
            // Each URL is checked by validation, which names the field; setting the variable
            // turns the chain features on.
            c.chain.get_or_insert_default().endpoints = comma_list(&v);
            Ok(())
        },
    },
    Var {
        name: "GATEWAY_DEPOSIT_ADDRESS",
        field: "chain.deposit_address",
        secret: false,
        apply: |c, v| {
            c.chain.get_or_insert_default().deposit_address = Some(v.trim().to_owned());
            Ok(())
        },
    },
    Var {
        name: "GATEWAY_JOURNAL_PATH",
        field: "metering.journal_path",
        secret: false,
        apply: |c, v| {
            if v.trim().is_empty() {
                return Err("expected a file path".to_string());
            }
            c.metering.journal_path = v;
            Ok(())
        },
    },
    Var {
        name: "GATEWAY_QUOTA_ON_STORE_FAILURE",
        field: "quota.on_store_failure",
        secret: false,
        apply: |c, v| {
            c.quota.on_store_failure = if v.eq_ignore_ascii_case("fail_open") {
                super::StoreFailure::FailOpen
            } else if v.eq_ignore_ascii_case("fail_closed") {
                super::StoreFailure::FailClosed
            } else {
                return Err("expected `fail_open` or `fail_closed`".to_string());
            };
            Ok(())
        },
    },
    Var {
        name: "GATEWAY_TRUSTED_PROXIES",
        field: "server.trusted_proxies",
        secret: false,
        apply: |c, v| {
            // Each entry is checked by validation, which names the field.
            c.server.trusted_proxies = comma_list(&v);
            Ok(())
        },
    },
    Var {
        name: "GATEWAY_WORKER_THREADS",
        field: "server.worker_threads",
        secret: false,
        apply: |c, v| {
            parse_number(&v, "a number of threads (0: one per core)")
                .map(|n| c.server.worker_threads = n)
        },
    },
    Var {
        name: "GATEWAY_LISTEN",
        field: "listen",
        secret: false,
        apply: |c, v| {
            c.listen = v.parse::<SocketAddr>().map_err(|_| {
                "expected an IP address and port such as 127.0.0.1:8080 or [::]:8080 \
                 (host names are not resolved)"
                    .to_string()
            })?;
            Ok(())
        },
    },
    Var {
        name: "GATEWAY_METRICS_LISTEN",
        field: "server.metrics_listen",
        secret: false,
        apply: |c, v| {
            c.server.metrics_listen = Some(v.parse::<SocketAddr>().map_err(|_| {
                "expected an IP address and port such as 0.0.0.0:9090 \
                 (host names are not resolved)"
                    .to_string()
            })?);
            Ok(())
        },
    },
    Var {
        name: "GATEWAY_MAX_BODY_BYTES",
        field: "max_body_bytes",
        secret: false,
        apply: |c, v| {
            c.max_body_bytes = parse_number(&v, "a number of bytes")?;
            Ok(())
        },
    },
    Var {
        name: "GATEWAY_REQUEST_TIMEOUT_SECS",
        field: "request_timeout_secs",
        secret: false,
        apply: |c, v| {
            c.request_timeout_secs = parse_number(&v, "a number of seconds")?;
            Ok(())
        },
    },
    Var {
        name: "GATEWAY_DRAIN_TIMEOUT_SECS",
        field: "drain_timeout_secs",
        secret: false,
        apply: |c, v| {
            c.drain_timeout_secs = parse_number(&v, "a number of seconds")?;
            Ok(())
        },
    },
    Var {
        name: "GATEWAY_LOG_FORMAT",
        field: "log_format",
        secret: false,
        apply: |c, v| {
            c.log_format = if v.eq_ignore_ascii_case("text") {
                LogFormat::Text
            } else if v.eq_ignore_ascii_case("json") {
                LogFormat::Json
            } else {
                return Err("expected `text` or `json`".to_string());
            };
            Ok(())
        },
    },
    Var {
        name: "GATEWAY_WEBHOOK_SECRET",
        field: "winner.webhook_secret",
        secret: true,
        apply: |c, v| {
            c.winner.webhook_secret = Some(Secret::new(v));
            Ok(())
        },
    },
    Var {
        name: "GATEWAY_HOTKEY",
        field: "hotkey",
        secret: false,
        apply: |c, v| {
            c.hotkey = Some(v);
            Ok(())
        },
    },
    Var {
        name: "GATEWAY_JWT_SECRET",
        field: "jwt_secret",
        secret: true,
        apply: |c, v| {
            c.jwt_secret = Some(Secret::new(v));
            Ok(())
        },
    },
    Var {
        name: "GATEWAY_JWT_SECRET_PREVIOUS",
        field: "jwt_secret_previous",
        secret: true,
        apply: |c, v| {
            c.jwt_secret_previous = Some(Secret::new(v));
            Ok(())
        },
    },
    Var {
        name: "GATEWAY_ALLOW_UNREGISTERED",
        field: "allow_unregistered",
        secret: false,
        apply: |c, v| {
            c.allow_unregistered = parse_bool(&v)?;
            Ok(())
        },
    },
    Var {
        name: "GATEWAY_REDIS_URL",
        field: "redis.url",
        secret: true,
        apply: |c, v| {
            c.redis.url = Some(Secret::new(v));
            Ok(())
        },
    },
    Var {
        name: "GATEWAY_REDIS_CLUSTER",
        field: "redis.cluster",
        secret: false,
        apply: |c, v| {
            c.redis.cluster = parse_bool(&v)?;
            Ok(())
        },
    },
    Var {
        name: "GATEWAY_KEY_PREFIX",
        field: "redis.key_prefix",
        secret: false,
        apply: |c, v| {
            c.redis.key_prefix = v;
            Ok(())
        },
    },
    Var {
        name: "GATEWAY_UPSTREAM_URL",
        field: "upstream.url",
        secret: false,
        apply: |c, v| {
            c.upstream.url = v;
            Ok(())
        },
    },
    Var {
        name: "CHUTES_API_KEY",
        field: "upstream.api_key",
        secret: true,
        apply: |c, v| {
            c.upstream.api_key = Some(Secret::new(v));
            Ok(())
        },
    },
    Var {
        name: "GATEWAY_WINNER",
        field: "winner.model",
        secret: false,
        apply: |c, v| {
            c.winner.model = Some(v);
            Ok(())
        },
    },
    Var {
        name: "GATEWAY_WINNER_POLL_SECS",
        field: "winner.poll_secs",
        secret: false,
        apply: |c, v| {
            c.winner.poll_secs = parse_number(&v, "a number of seconds")?;
            Ok(())
        },
    },
    Var {
        name: "GATEWAY_AFFINE_API_URL",
        field: "winner.affine_api_url",
        secret: false,
        apply: |c, v| {
            c.winner.affine_api_url = v;
            Ok(())
        },
    },
];

/// Applies every set variable to `config`, returning the fields the environment set (so a
/// later validation error can name the variable the operator actually wrote).
///
/// A variable set to the empty string counts as unset: `docker run -e VAR=` and compose's
/// `${VAR:-}` produce empty strings when the operator meant "not set", and an empty value is
/// never valid for any of these settings anyway.
pub(super) fn apply(
    config: &mut Config,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Vec<&'static str>, ConfigError> {
    let mut set = Vec::new();
    for var in VARS {
        let Some(value) = env(var.name).filter(|v| !v.is_empty()) else {
            continue;
        };
        let shown = (!var.secret).then(|| value.clone());
        (var.apply)(config, value).map_err(|expected| ConfigError::Env {
            var: var.name,
            value: shown,
            expected,
        })?;
        set.push(var.field);
    }
    Ok(set)
}

/// The variable that sets `field`, if any.
pub(super) fn var_for(field: &str) -> Option<&'static str> {
    VARS.iter().find(|v| v.field == field).map(|v| v.name)
}

/// The fields whose values are secrets.
pub(super) fn secret_fields() -> impl Iterator<Item = &'static str> {
    VARS.iter().filter(|v| v.secret).map(|v| v.field)
}

fn parse_number<T: std::str::FromStr>(v: &str, what: &str) -> Result<T, String> {
    v.parse::<T>()
        .map_err(|_| format!("expected {what} (a non-negative whole number in range)"))
}

/// `1`/`true` and `0`/`false`, any case: what shells, compose files and Helm charts emit.
fn parse_bool(v: &str) -> Result<bool, String> {
    if v == "1" || v.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if v == "0" || v.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err("expected 1, true, 0 or false".to_string())
    }
}
