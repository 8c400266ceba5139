//! Configuration: the README's configuration defaults and variables, file/env precedence, strictness,
//! and that secrets never leak into errors or the `check-config` output.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;

use affine_gateway::config::{
    Config, ConfigError, DEFAULT_UPSTREAM_URL, DEV_HOTKEY, LogFormat, Secret, env_variables,
};

/// An environment made of `pairs` only.
fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k: &str| map.get(k).cloned()
}

fn load_env(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::load(None, env(pairs))
}

fn load_err(pairs: &[(&str, &str)]) -> String {
    match load_env(pairs) {
        Ok(c) => panic!("{pairs:?} was accepted: {c:?}"),
        Err(e) => e.to_string(),
    }
}

fn toml_file(contents: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile()
        .expect("temp file");
    f.write_all(contents.as_bytes()).expect("write temp file");
    f
}

const STRONG_SECRET: &str = "0123456789abcdef0123456789abcdef-jwt";
const PINNED: &str = "Qwen/Qwen3-32B@0123abcd";

#[test]
fn defaults_with_an_empty_environment_follow_the_contract() {
    let c = load_env(&[]).expect("defaults are valid");
    assert_eq!(c, Config::default());
    assert_eq!(c.listen, "127.0.0.1:8080".parse::<SocketAddr>().unwrap());
    assert_eq!(c.max_body_bytes, 1_048_576);
    assert_eq!(c.request_timeout_secs, 300);
    assert_eq!(c.drain_timeout_secs, 30);
    assert_eq!(c.log_format, LogFormat::Text);
    assert_eq!(c.hotkey, None);
    assert_eq!(c.effective_hotkey(), DEV_HOTKEY);
    assert!(c.jwt_secret.is_none());
    assert!(c.allow_unregistered);
    assert!(c.redis.url.is_none());
    assert!(!c.redis.cluster);
    assert_eq!(c.redis.key_prefix, "agw:");
    assert_eq!(c.redis.connect_timeout_ms, 2000);
    assert_eq!(c.redis.command_timeout_ms, 250);
    assert_eq!(c.upstream.url, "https://llm.chutes.ai/v1");
    assert_eq!(c.upstream.url, DEFAULT_UPSTREAM_URL);
    assert!(c.upstream.api_key.is_none());
    assert_eq!(c.upstream.connect_timeout_ms, 5000);
    assert_eq!(c.upstream.first_token_timeout_secs, 120);
    assert_eq!(c.upstream.idle_timeout_secs, 60);
    assert_eq!(c.upstream.total_timeout_secs, 600);
    assert_eq!(c.winner.model, None);
    assert_eq!(c.winner.poll_secs, 30);
    assert_eq!(c.winner.affine_api_url, "https://api.affine.io/api/v1");
    assert_eq!(c.reason.default_max_tokens, 2048);
    assert_eq!(c.reason.max_tokens_limit, 32768);
    assert_eq!(c.request_timeout().as_secs(), 300);
    assert_eq!(c.winner.poll_interval().as_secs(), 30);
    assert_eq!(c.redis.command_timeout().as_millis(), 250);
    assert!(c.uses_simulator());
}

#[test]
fn an_empty_file_gives_the_defaults() {
    assert_eq!(Config::from_toml_str("").expect("valid"), Config::default());
    let f = toml_file("# nothing set\n");
    assert_eq!(
        Config::load(Some(f.path()), env(&[])).expect("valid"),
        Config::default()
    );
}

type Check = fn(&Config) -> bool;

/// Every variable with a valid non-default value and how it shows in the config.
const OVERRIDES: &[(&str, &str, Check)] = &[
    ("GATEWAY_JOURNAL_PATH", "/var/lib/agw/journal", |c| {
        c.metering.journal_path == "/var/lib/agw/journal"
    }),
    ("GATEWAY_LISTEN", "0.0.0.0:9000", |c| {
        c.listen == "0.0.0.0:9000".parse::<SocketAddr>().unwrap()
    }),
    ("GATEWAY_METRICS_LISTEN", "0.0.0.0:9090", |c| {
        c.server.metrics_listen == Some("0.0.0.0:9090".parse::<SocketAddr>().unwrap())
    }),
    ("GATEWAY_MAX_BODY_BYTES", "4096", |c| {
        c.max_body_bytes == 4096
    }),
    ("GATEWAY_REQUEST_TIMEOUT_SECS", "45", |c| {
        c.request_timeout_secs == 45
    }),
    ("GATEWAY_DRAIN_TIMEOUT_SECS", "0", |c| {
        c.drain_timeout_secs == 0
    }),
    ("GATEWAY_LOG_FORMAT", "json", |c| {
        c.log_format == LogFormat::Json
    }),
    (
        "GATEWAY_HOTKEY",
        "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY",
        |c| {
            c.hotkey.as_deref() == Some("5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY")
                && c.effective_hotkey() == "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
        },
    ),
    ("GATEWAY_JWT_SECRET", STRONG_SECRET, |c| {
        c.jwt_secret.as_ref().map(Secret::expose) == Some(STRONG_SECRET)
    }),
    ("GATEWAY_ALLOW_UNREGISTERED", "false", |c| {
        !c.allow_unregistered
    }),
    ("GATEWAY_WEBHOOK_SECRET", "hook-secret", |c| {
        c.winner.webhook_secret.as_ref().map(Secret::expose) == Some("hook-secret")
    }),
    ("GATEWAY_REDIS_URL", "redis://127.0.0.1:6379/0", |c| {
        c.redis.url.as_ref().map(Secret::expose) == Some("redis://127.0.0.1:6379/0")
    }),
    ("GATEWAY_KEY_PREFIX", "tenant-a:", |c| {
        c.redis.key_prefix == "tenant-a:"
    }),
    ("GATEWAY_UPSTREAM_URL", "http://127.0.0.1:8000/v1/", |c| {
        c.upstream.url == "http://127.0.0.1:8000/v1"
    }),
    ("CHUTES_API_KEY", "cpk_live_abc", |c| {
        c.upstream.api_key.as_ref().map(Secret::expose) == Some("cpk_live_abc")
    }),
    ("GATEWAY_WINNER", PINNED, |c| {
        c.winner.model.as_deref() == Some(PINNED)
    }),
    ("GATEWAY_WINNER_POLL_SECS", "5", |c| c.winner.poll_secs == 5),
    ("GATEWAY_WORKER_THREADS", "1", |c| {
        c.server.worker_threads == 1 && c.server.worker_threads() == 1
    }),
    ("GATEWAY_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.1", |c| {
        c.server.trusted_proxies == ["10.0.0.0/8", "192.168.1.1"]
    }),
    (
        "GATEWAY_AFFINE_API_URL",
        "https://affine.example.org/api/v1",
        |c| c.winner.affine_api_url == "https://affine.example.org/api/v1",
    ),
    (
        "GATEWAY_CHAIN_ENDPOINTS",
        "http://node-a:9933, http://node-b:9933",
        |c| {
            c.chain
                .as_ref()
                .is_some_and(|ch| ch.endpoints == ["http://node-a:9933", "http://node-b:9933"])
        },
    ),
];

#[test]
fn each_variable_overrides_its_field() {
    for (var, value, check) in OVERRIDES {
        let c = load_env(&[(var, value)]).unwrap_or_else(|e| panic!("{var}={value}: {e}"));
        assert!(check(&c), "{var}={value} did not take effect: {c:?}");
        assert!(
            !check(&Config::default()),
            "{var}: the test value is the default"
        );
    }
    // GATEWAY_REDIS_CLUSTER needs a URL beside it.
    let c = load_env(&[
        ("GATEWAY_REDIS_URL", "redis://10.0.0.1:7000"),
        ("GATEWAY_REDIS_CLUSTER", "1"),
        ("GATEWAY_QUOTA_ON_STORE_FAILURE", "fail_closed"),
    ])
    .expect("valid");
    assert!(c.redis.cluster);
    assert!(c.redis.cluster_mode());
    assert_eq!(
        c.quota.on_store_failure,
        affine_gateway::config::StoreFailure::FailClosed
    );
    // A cluster URL turns cluster mode on by itself.
    let c = load_env(&[(
        "GATEWAY_REDIS_URL",
        "redis+cluster://:pw@10.0.0.1:7000,10.0.0.2:7000",
    )])
    .expect("valid");
    assert!(!c.redis.cluster);
    assert!(c.redis.cluster_mode());
    // GATEWAY_DEPOSIT_ADDRESS needs chain endpoints beside it.
    assert!(
        load_env(&[(
            "GATEWAY_DEPOSIT_ADDRESS",
            "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
        )])
        .is_err()
    );
    let c = load_env(&[
        ("GATEWAY_CHAIN_ENDPOINTS", "http://node-a:9933"),
        (
            "GATEWAY_DEPOSIT_ADDRESS",
            "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY",
        ),
    ])
    .expect("valid");
    assert_eq!(
        c.chain.unwrap().deposit_address.as_deref(),
        Some("5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY")
    );
}

#[test]
fn the_table_above_covers_every_variable() {
    let mut tested: Vec<&str> = OVERRIDES.iter().map(|(v, _, _)| *v).collect();
    tested.push("GATEWAY_REDIS_CLUSTER");
    tested.push("GATEWAY_QUOTA_ON_STORE_FAILURE");
    tested.push("GATEWAY_DEPOSIT_ADDRESS");
    tested.push("GATEWAY_JWT_SECRET_PREVIOUS");
    tested.sort_unstable();
    let mut read: Vec<&str> = env_variables().map(|(v, _)| v).collect();
    read.sort_unstable();
    assert_eq!(tested, read);
}

#[test]
fn boolean_variables_accept_the_usual_spellings() {
    for (value, want) in [
        ("1", true),
        ("true", true),
        ("TRUE", true),
        ("0", false),
        ("false", false),
        ("False", false),
    ] {
        let c = load_env(&[("GATEWAY_ALLOW_UNREGISTERED", value)]).expect("valid bool");
        assert_eq!(c.allow_unregistered, want, "{value}");
    }
}

#[test]
fn empty_variables_count_as_unset() {
    let empty: Vec<(&str, &str)> = env_variables().map(|(v, _)| (v, "")).collect();
    assert_eq!(load_env(&empty).expect("valid"), Config::default());
}

#[test]
fn the_environment_overrides_the_file() {
    let f = toml_file(
        r#"
listen = "127.0.0.1:7000"
max_body_bytes = 2048
log_format = "json"

[redis]
key_prefix = "from-file:"

[upstream]
url = "http://127.0.0.1:9999/v1/"
idle_timeout_secs = 15
"#,
    );
    let c = Config::load(
        Some(f.path()),
        env(&[
            ("GATEWAY_LISTEN", "127.0.0.1:7001"),
            ("GATEWAY_KEY_PREFIX", "from-env:"),
            ("GATEWAY_MAX_BODY_BYTES", ""),
        ]),
    )
    .expect("valid");
    assert_eq!(c.listen, "127.0.0.1:7001".parse::<SocketAddr>().unwrap());
    assert_eq!(c.redis.key_prefix, "from-env:");
    // Not overridden (an empty variable is unset): the file wins over the default.
    assert_eq!(c.max_body_bytes, 2048);
    assert_eq!(c.log_format, LogFormat::Json);
    assert_eq!(c.upstream.idle_timeout_secs, 15);
    assert_eq!(c.upstream.url, "http://127.0.0.1:9999/v1");
}

#[test]
fn a_missing_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("absent.toml");
    let err = Config::load(Some(&path), env(&[])).expect_err("missing file");
    assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

fn file_err(contents: &str) -> (String, String) {
    let f = toml_file(contents);
    let err = Config::load(Some(f.path()), env(&[])).expect_err("refused");
    (err.to_string(), f.path().display().to_string())
}

#[test]
fn unknown_keys_are_errors_naming_key_file_and_line() {
    let (err, path) = file_err("listen = \"127.0.0.1:8080\"\nlisten_addr = \"0.0.0.0:80\"\n");
    assert!(err.contains("listen_addr"), "{err}");
    assert!(err.starts_with(&format!("{path}:2:")), "{err}");

    let (err, path) = file_err("[upstream]\nurl = \"https://x.example/v1\"\napi_kye = \"k\"\n");
    assert!(err.contains("api_kye"), "{err}");
    assert!(err.contains("upstream"), "{err}");
    assert!(err.starts_with(&format!("{path}:3:")), "{err}");

    let (err, _) = file_err("[plans_typo]\nx = 1\n");
    assert!(err.contains("plans_typo"), "{err}");

    let err = Config::from_toml_str("[reason]\nmax_token_limit = 5\n")
        .expect_err("unknown nested key")
        .to_string();
    assert!(err.contains("max_token_limit"), "{err}");
}

#[test]
fn malformed_toml_and_wrong_types_name_the_place() {
    let (err, path) = file_err("max_body_bytes = \"big\"\n");
    assert!(err.starts_with(&format!("{path}:1:")), "{err}");
    assert!(err.contains("max_body_bytes"), "{err}");

    let (err, path) = file_err("[redis\n");
    assert!(err.starts_with(&format!("{path}:1:")), "{err}");

    let (err, _) = file_err("log_format = \"xml\"\n");
    assert!(err.contains("log_format"), "{err}");
}

/// Invalid environment values: the error names the variable (and, for values that parse but
/// are out of range, the field), and for non-secrets quotes the bad value.
#[test]
fn invalid_variables_are_named() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "GATEWAY_LISTEN",
            "localhost:8080",
            &["GATEWAY_LISTEN", "localhost:8080"],
        ),
        (
            "GATEWAY_LISTEN",
            "127.0.0.1",
            &["GATEWAY_LISTEN", "127.0.0.1"],
        ),
        (
            "GATEWAY_MAX_BODY_BYTES",
            "0",
            &["max_body_bytes", "GATEWAY_MAX_BODY_BYTES"],
        ),
        (
            "GATEWAY_MAX_BODY_BYTES",
            "1MB",
            &["GATEWAY_MAX_BODY_BYTES", "1MB"],
        ),
        (
            "GATEWAY_REQUEST_TIMEOUT_SECS",
            "0",
            &["request_timeout_secs"],
        ),
        (
            "GATEWAY_LOG_FORMAT",
            "xml",
            &["GATEWAY_LOG_FORMAT", "xml", "json"],
        ),
        ("GATEWAY_HOTKEY", "5Grw vaEF", &["hotkey", "GATEWAY_HOTKEY"]),
        (
            "GATEWAY_JWT_SECRET",
            "too-short",
            &["jwt_secret", "GATEWAY_JWT_SECRET", "32"],
        ),
        (
            "GATEWAY_ALLOW_UNREGISTERED",
            "maybe",
            &["GATEWAY_ALLOW_UNREGISTERED", "maybe"],
        ),
        (
            "GATEWAY_REDIS_URL",
            "http://127.0.0.1:6379",
            &["redis.url", "redis://"],
        ),
        ("GATEWAY_REDIS_URL", "redis://", &["redis.url", "host"]),
        (
            "GATEWAY_REDIS_URL",
            "redis+cluster://h1:7000,h2:port",
            &["redis.url", "node 2"],
        ),
        (
            "GATEWAY_REDIS_URL",
            "redis+cluster://h1:7000/2",
            &["redis.url", "database 0"],
        ),
        (
            "GATEWAY_REDIS_CLUSTER",
            "1",
            &["redis.cluster", "redis.url"],
        ),
        (
            "GATEWAY_REDIS_CLUSTER",
            "yes",
            &["GATEWAY_REDIS_CLUSTER", "yes"],
        ),
        (
            "GATEWAY_KEY_PREFIX",
            "my prefix",
            &["redis.key_prefix", "whitespace"],
        ),
        ("GATEWAY_KEY_PREFIX", "{agw}:", &["redis.key_prefix", "{"]),
        (
            "GATEWAY_UPSTREAM_URL",
            "ftp://llm.example/v1",
            &["upstream.url", "ftp://llm.example/v1"],
        ),
        (
            "GATEWAY_UPSTREAM_URL",
            "llm.chutes.ai/v1",
            &["upstream.url", "GATEWAY_UPSTREAM_URL"],
        ),
        (
            "GATEWAY_UPSTREAM_URL",
            "https://host:port/v1",
            &["upstream.url", "port"],
        ),
        (
            "CHUTES_API_KEY",
            "cpk with space",
            &["upstream.api_key", "CHUTES_API_KEY"],
        ),
        (
            "GATEWAY_WINNER",
            "just-a-model",
            &["winner.model", "GATEWAY_WINNER", "just-a-model"],
        ),
        ("GATEWAY_WINNER", "a/b/c", &["winner.model", "a/b/c"]),
        ("GATEWAY_WINNER", "org/model@", &["winner.model"]),
        (
            "GATEWAY_WINNER_POLL_SECS",
            "0",
            &["winner.poll_secs", "GATEWAY_WINNER_POLL_SECS"],
        ),
        (
            "GATEWAY_WINNER_POLL_SECS",
            "-5",
            &["GATEWAY_WINNER_POLL_SECS", "-5"],
        ),
        (
            "GATEWAY_AFFINE_API_URL",
            "api.affine.io",
            &["winner.affine_api_url"],
        ),
    ];
    for (var, value, wanted) in cases {
        let err = load_err(&[(var, value)]);
        for w in *wanted {
            assert!(err.contains(w), "{var}={value}: {err:?} lacks {w:?}");
        }
    }
}

#[test]
fn invalid_file_values_name_the_field_and_the_file() {
    let cases: &[(&str, &str)] = &[
        ("max_body_bytes = 0", "max_body_bytes"),
        ("jwt_secret = \"short\"", "jwt_secret"),
        ("[winner]\nmodel = \"no-slash\"", "winner.model"),
        ("[winner]\npoll_secs = 0", "winner.poll_secs"),
        ("[redis]\nurl = \"tcp://x:1\"", "redis.url"),
        ("[redis]\nkey_prefix = \"\"", "redis.key_prefix"),
        (
            "[redis]\ncommand_timeout_ms = 0",
            "redis.command_timeout_ms",
        ),
        ("[upstream]\nurl = \"mailto:x@y\"", "upstream.url"),
        (
            "[upstream]\ntotal_timeout_secs = 0",
            "upstream.total_timeout_secs",
        ),
        (
            "[reason]\ndefault_max_tokens = 40000",
            "reason.default_max_tokens",
        ),
        ("[reason]\nmax_tokens_limit = 0", "reason.max_tokens_limit"),
        ("hotkey = \"\"", "hotkey"),
    ];
    for (toml, field) in cases {
        let err = Config::from_toml_str(toml).expect_err(toml).to_string();
        assert!(err.starts_with(field), "{toml}: {err}");
        let (err, path) = file_err(toml);
        assert!(err.contains(field) && err.contains(&path), "{toml}: {err}");
    }
}

/// Checks that neither the message nor the debug form of an error contains `secret`.
fn assert_hidden(err: &ConfigError, secret: &str) {
    assert!(
        !err.to_string().contains(secret),
        "leaked in Display: {err}"
    );
    assert!(
        !format!("{err:?}").contains(secret),
        "leaked in Debug: {err:?}"
    );
}

#[test]
fn webhooks_are_signed_or_refused_at_start() {
    let hook = "[winner]\ndeploy_webhook = \"https://deployer.internal/deploy\"\n";
    let err = Config::from_toml_str(hook).expect_err("a webhook without its secret");
    assert!(err.to_string().contains("winner.webhook_secret"), "{err}");
    let c = Config::from_toml_str(&format!("{hook}webhook_secret = \"s3cr3t-Marker\"\n"))
        .expect("a signed webhook");
    assert!(!format!("{c:?}").contains("s3cr3t-Marker"));
    let err =
        Config::from_toml_str("[winner]\nretire_webhook = \"ftp://x\"\nwebhook_secret = \"k\"\n")
            .expect_err("not an http URL");
    assert!(err.to_string().contains("winner.retire_webhook"), "{err}");
}

#[test]
fn secrets_never_appear_in_errors() {
    let marker = "s3cr3t-Marker";
    let cases: Vec<(&str, String)> = vec![
        ("GATEWAY_JWT_SECRET", marker.to_string()),
        ("GATEWAY_REDIS_URL", marker.to_string()),
        (
            "GATEWAY_REDIS_URL",
            format!("http://user:{marker}@127.0.0.1:6379"),
        ),
        ("GATEWAY_REDIS_URL", format!("redis://user:{marker}@")),
        (
            "GATEWAY_REDIS_URL",
            format!("redis://:{marker}@host:notaport"),
        ),
        ("GATEWAY_REDIS_URL", format!("redis://:{marker} @host")),
        (
            "GATEWAY_REDIS_URL",
            format!("redis+cluster://agw:{marker}@h1:7000,h2:notaport"),
        ),
        (
            "GATEWAY_REDIS_URL",
            format!("rediss+cluster://agw:{marker}@h1:7000/5"),
        ),
        ("CHUTES_API_KEY", format!("{marker} with spaces")),
        ("CHUTES_API_KEY", format!("{marker}\n")),
    ];
    for (var, value) in &cases {
        let err = load_env(&[(var, value)]).expect_err(var);
        assert!(err.to_string().contains(var), "{var}: {err}");
        assert_hidden(&err, marker);
    }

    for toml in [
        format!("jwt_secret = \"{marker}\""),
        "jwt_secret = 1234567".to_string(),
        format!("[redis]\nurl = \"https://{marker}@x\""),
        "[redis]\nurl = 1234567".to_string(),
        "[upstream]\napi_key = 1234567".to_string(),
        format!("[upstream]\napi_key = \"{marker}\"\nbogus = 1"),
        format!("jwt_secret = \"{marker}"),
    ] {
        let err = Config::from_toml_str(&toml).expect_err(&toml);
        assert_hidden(&err, marker);
        assert_hidden(&err, "1234567");
    }
}

#[test]
fn credentials_in_upstream_urls_are_not_echoed() {
    let err = load_err(&[(
        "GATEWAY_UPSTREAM_URL",
        "https://me:pa55word@llm.example/v1?x=1",
    )]);
    assert!(err.contains("upstream.url"), "{err}");
    assert!(!err.contains("pa55word"), "{err}");
}

fn config_with_every_secret() -> Config {
    load_env(&[
        ("GATEWAY_JWT_SECRET", "jwt-secret-value-0123456789-abcdef"),
        (
            "GATEWAY_REDIS_URL",
            "rediss://default:redis-password-xyz@cache.internal:6380/0",
        ),
        ("CHUTES_API_KEY", "cpk_api_key_value_42"),
        (
            "GATEWAY_UPSTREAM_URL",
            "https://basic-user:upstream-pw-77@llm.example/v1",
        ),
        (
            "GATEWAY_AFFINE_API_URL",
            "https://affine-user:affine-pw-88@affine.example/api/v1",
        ),
    ])
    .expect("valid")
}

#[test]
fn redacted_toml_hides_every_secret() {
    let c = config_with_every_secret();
    let shown = c.to_redacted_toml();
    for secret in [
        "jwt-secret-value",
        "redis-password-xyz",
        "cache.internal",
        "cpk_api_key_value_42",
        "upstream-pw-77",
        "affine-pw-88",
    ] {
        assert!(!shown.contains(secret), "{secret} leaked:\n{shown}");
    }
    assert!(shown.contains("jwt_secret = \"<redacted>\""), "{shown}");
    assert!(shown.contains("api_key = \"<redacted>\""), "{shown}");
    assert!(shown.contains("llm.example/v1"), "{shown}");

    let debug = format!("{:?}", c.jwt_secret);
    assert!(!debug.contains("jwt-secret-value"), "{debug}");
}

#[test]
fn pasting_redacted_output_back_is_refused() {
    let shown = config_with_every_secret().to_redacted_toml();
    let err = Config::from_toml_str(&shown).expect_err("placeholders are not secrets");
    assert!(err.to_string().contains("<redacted>"), "{err}");
}

#[test]
fn redacted_toml_round_trips_without_secrets() {
    let c = load_env(&[
        ("GATEWAY_LISTEN", "[::1]:8443"),
        ("GATEWAY_LOG_FORMAT", "json"),
        (
            "GATEWAY_HOTKEY",
            "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY",
        ),
        ("GATEWAY_ALLOW_UNREGISTERED", "0"),
        ("GATEWAY_KEY_PREFIX", "rt:"),
        ("GATEWAY_UPSTREAM_URL", "http://127.0.0.1:9/v1"),
        ("GATEWAY_WINNER", PINNED),
        ("GATEWAY_WINNER_POLL_SECS", "7"),
        ("GATEWAY_DRAIN_TIMEOUT_SECS", "0"),
    ])
    .expect("valid");
    let back = Config::from_toml_str(&c.to_redacted_toml()).expect("parses back");
    assert_eq!(back, c);
    let defaults = Config::from_toml_str(&Config::default().to_redacted_toml()).expect("parses");
    assert_eq!(defaults, Config::default());
}

#[test]
fn simulator_only_with_the_default_upstream_and_no_key() {
    assert!(load_env(&[]).unwrap().uses_simulator());
    assert!(
        load_env(&[("GATEWAY_UPSTREAM_URL", "https://llm.chutes.ai/v1/")])
            .unwrap()
            .uses_simulator()
    );
    assert!(
        !load_env(&[("CHUTES_API_KEY", "cpk_x")])
            .unwrap()
            .uses_simulator()
    );
    assert!(
        !load_env(&[("GATEWAY_UPSTREAM_URL", "http://127.0.0.1:8000/v1")])
            .unwrap()
            .uses_simulator()
    );
    assert!(
        !load_env(&[
            ("GATEWAY_UPSTREAM_URL", "http://127.0.0.1:8000/v1"),
            ("CHUTES_API_KEY", "cpk_x"),
        ])
        .unwrap()
        .uses_simulator()
    );
}

#[test]
fn warnings_name_the_defaults_in_force() {
    let w = load_env(&[]).unwrap().warnings().join("\n");
    for var in [
        "GATEWAY_REDIS_URL",
        "GATEWAY_HOTKEY",
        "GATEWAY_JWT_SECRET",
        "CHUTES_API_KEY",
    ] {
        assert!(w.contains(var), "no warning about {var}: {w}");
    }
    assert!(w.contains(DEV_HOTKEY), "{w}");

    let configured = load_env(&[
        ("GATEWAY_REDIS_URL", "redis://127.0.0.1:6379"),
        (
            "GATEWAY_HOTKEY",
            "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY",
        ),
        ("GATEWAY_JWT_SECRET", STRONG_SECRET),
        ("CHUTES_API_KEY", "cpk_x"),
    ])
    .unwrap();
    assert_eq!(configured.warnings(), Vec::<String>::new());

    let clear = load_env(&[
        ("GATEWAY_UPSTREAM_URL", "http://llm.example/v1"),
        ("CHUTES_API_KEY", "cpk_x"),
    ])
    .unwrap()
    .warnings()
    .join("\n");
    assert!(clear.contains("unencrypted"), "{clear}");
}

#[test]
fn secrets_compare_by_value_and_print_redacted() {
    let a = Secret::new("same-value".to_string());
    assert_eq!(a, Secret::new("same-value".to_string()));
    assert_ne!(a, Secret::new("same-valuE".to_string()));
    assert_ne!(a, Secret::new("same-value-longer".to_string()));
    assert_eq!(a.to_string(), "<redacted>");
    assert_eq!(format!("{a:?}"), "<redacted>");
}

#[test]
fn loading_reads_a_real_file_path() {
    // `load` takes any path; a relative path in the error is shown as given.
    let err =
        Config::load(Some(Path::new("no/such/dir/gateway.toml")), env(&[])).expect_err("missing");
    assert!(
        err.to_string().contains("no/such/dir/gateway.toml"),
        "{err}"
    );
}

// issue #11 (auth): the replica clock-skew bound of replay protection.
#[test]
fn the_replica_clock_skew_bound_has_a_default_and_a_range() {
    let cfg = Config::from_toml_str("").unwrap();
    assert_eq!(cfg.auth.replica_clock_skew_secs, 5);
    let cfg = Config::from_toml_str("[auth]\nreplica_clock_skew_secs = 0").unwrap();
    assert_eq!(cfg.auth.replica_clock_skew(), std::time::Duration::ZERO);
    let err = Config::from_toml_str("[auth]\nreplica_clock_skew_secs = 61")
        .expect_err("above 60")
        .to_string();
    assert!(err.starts_with("auth.replica_clock_skew_secs"), "{err}");
}

#[test]
fn trusted_proxies_must_be_networks() {
    for bad in ["10.0.0.1/8", "not-a-net", "10.0.0.0/33"] {
        let err = Config::from_toml_str(&format!("[server]\ntrusted_proxies = [\"{bad}\"]"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("server.trusted_proxies"), "{bad}: {err}");
    }
    let ok = Config::from_toml_str("[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]")
        .expect("valid");
    assert_eq!(ok.server.trusted_networks().len(), 2);
}

// issue #16: JWT secret rotation (GATEWAY_JWT_SECRET_PREVIOUS).
#[test]
fn the_previous_jwt_secret_is_checked_like_the_current_and_needs_it() {
    const NEXT: &str = "fedcba9876543210fedcba9876543210-jwt";
    let c = load_env(&[
        ("GATEWAY_JWT_SECRET", NEXT),
        ("GATEWAY_JWT_SECRET_PREVIOUS", STRONG_SECRET),
    ])
    .expect("a rotation is valid");
    assert_eq!(c.jwt_secret.as_ref().map(Secret::expose), Some(NEXT));
    assert_eq!(
        c.jwt_secret_previous.as_ref().map(Secret::expose),
        Some(STRONG_SECRET)
    );
    assert!(Config::default().jwt_secret_previous.is_none());

    for (env, wanted) in [
        (
            vec![("GATEWAY_JWT_SECRET_PREVIOUS", STRONG_SECRET)],
            &[
                "jwt_secret_previous",
                "GATEWAY_JWT_SECRET_PREVIOUS",
                "requires",
            ][..],
        ),
        (
            vec![
                ("GATEWAY_JWT_SECRET", STRONG_SECRET),
                ("GATEWAY_JWT_SECRET_PREVIOUS", STRONG_SECRET),
            ],
            &["jwt_secret_previous", "differ"][..],
        ),
        (
            vec![
                ("GATEWAY_JWT_SECRET", NEXT),
                ("GATEWAY_JWT_SECRET_PREVIOUS", "short-previous"),
            ],
            &["jwt_secret_previous", "GATEWAY_JWT_SECRET_PREVIOUS", "32"][..],
        ),
        (
            vec![
                ("GATEWAY_JWT_SECRET", NEXT),
                ("GATEWAY_JWT_SECRET_PREVIOUS", "<redacted>"),
            ],
            &["jwt_secret_previous", "placeholder"][..],
        ),
    ] {
        let err = load_err(&env);
        for w in wanted {
            assert!(err.contains(w), "{env:?}: {err:?} lacks {w:?}");
        }
        // The values never show, neither the current nor the previous secret.
        assert!(!err.contains(STRONG_SECRET) && !err.contains(NEXT), "{err}");
        assert!(!err.contains("short-previous"), "{err}");
    }

    // check-config redacts it like the current one.
    let shown = c.to_redacted_toml();
    assert!(
        shown.contains("jwt_secret_previous = \"<redacted>\""),
        "{shown}"
    );
    assert!(
        !shown.contains(STRONG_SECRET) && !shown.contains(NEXT),
        "{shown}"
    );
}

// issue #16: one settlement journal per listen address by default.
#[test]
fn the_default_journal_path_follows_the_listen_address() {
    use affine_gateway::config::{DEFAULT_JOURNAL_PATH, listen_slug};
    let c = load_env(&[]).unwrap();
    assert_eq!(c.metering.journal_path, DEFAULT_JOURNAL_PATH);
    let at = |listen: &str| {
        c.metering
            .journal_path_for(listen.parse().unwrap())
            .display()
            .to_string()
    };
    assert_eq!(
        at("127.0.0.1:8080"),
        "affine-gateway-127.0.0.1-8080.journal"
    );
    assert_eq!(
        at("127.0.0.1:8081"),
        "affine-gateway-127.0.0.1-8081.journal"
    );
    assert_eq!(at("0.0.0.0:8080"), "affine-gateway-0.0.0.0-8080.journal");
    assert_eq!(at("[::1]:8080"), "affine-gateway---1-8080.journal");
    assert_eq!(
        at("[2001:db8::1]:443"),
        "affine-gateway-2001-db8--1-443.journal"
    );
    assert_ne!(
        listen_slug("[::1]:8080".parse().unwrap()),
        listen_slug("[::]:18080".parse().unwrap())
    );

    // An explicit path wins, and may use the placeholder itself.
    let c = load_env(&[("GATEWAY_JOURNAL_PATH", "/var/lib/agw/journal")]).unwrap();
    assert_eq!(
        c.metering
            .journal_path_for("127.0.0.1:8080".parse().unwrap()),
        Path::new("/var/lib/agw/journal")
    );
    let c = load_env(&[("GATEWAY_JOURNAL_PATH", "/var/lib/agw/{listen}.journal")]).unwrap();
    assert_eq!(
        c.metering
            .journal_path_for("10.0.0.7:9000".parse().unwrap()),
        Path::new("/var/lib/agw/10.0.0.7-9000.journal")
    );
    // Any other placeholder is a mistake, not part of a file name.
    for bad in ["/var/lib/agw/{port}.journal", "j-{listen"] {
        let err = load_err(&[("GATEWAY_JOURNAL_PATH", bad)]);
        assert!(
            err.contains("metering.journal_path") && err.contains("{listen}"),
            "{bad}: {err}"
        );
    }
    let err = Config::from_toml_str("[metering]\njournal_path = \"  \"").unwrap_err();
    assert!(err.to_string().contains("metering.journal_path"), "{err}");
}

// issue #16: the metrics port is a second address, never the main one.
#[test]
fn the_metrics_listener_must_differ_from_the_listen_address() {
    let err = load_err(&[
        ("GATEWAY_LISTEN", "0.0.0.0:8080"),
        ("GATEWAY_METRICS_LISTEN", "0.0.0.0:8080"),
    ]);
    assert!(
        err.contains("server.metrics_listen") && err.contains("GATEWAY_METRICS_LISTEN"),
        "{err}"
    );
    let err = load_err(&[("GATEWAY_METRICS_LISTEN", "metrics:9090")]);
    assert!(err.contains("GATEWAY_METRICS_LISTEN"), "{err}");
    let c = Config::from_toml_str("[server]\nmetrics_listen = \"0.0.0.0:9090\"").unwrap();
    assert_eq!(
        c.server.metrics_listen,
        Some("0.0.0.0:9090".parse().unwrap())
    );
    assert_eq!(Config::from_toml_str(&c.to_redacted_toml()).unwrap(), c);
}

// issue #16: the configuration files shipped with the Kubernetes manifests load as they are.
#[test]
fn the_deployment_config_files_are_valid() {
    for file in [
        "deploy/k8s/base/gateway.toml",
        "deploy/k8s/overlays/example/gateway.toml",
    ] {
        let c =
            Config::load(Some(Path::new(file)), env(&[])).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(
            c.listen,
            "0.0.0.0:8080".parse::<SocketAddr>().unwrap(),
            "{file}"
        );
        assert_eq!(
            c.server.metrics_listen,
            Some("0.0.0.0:9100".parse().unwrap()),
            "{file}: the port the NetworkPolicy and the ServiceMonitor name"
        );
        assert_eq!(
            c.metering.journal_path_for(c.listen),
            Path::new("/var/lib/affine-gateway/affine-gateway-0.0.0.0-8080.journal"),
            "{file}: on the pod's volume"
        );
        // Shorter than terminationGracePeriodSeconds (45) minus the preStop pause (5).
        assert!(c.drain_timeout_secs + 5 + 5 <= 45, "{file}");
    }
}
