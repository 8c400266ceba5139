//! The `affine-gateway` binary: its subcommands and its behaviour on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_affine-gateway");

fn cmd() -> Command {
    let mut c = Command::new(BIN);
    for k in [
        "GATEWAY_REDIS_URL",
        "CHUTES_API_KEY",
        "GATEWAY_JWT_SECRET",
        "GATEWAY_WINNER",
        "GATEWAY_LISTEN",
        "GATEWAY_UPSTREAM_URL",
    ] {
        c.env_remove(k);
    }
    c
}

#[test]
fn openapi_prints_the_document() {
    let out = cmd().arg("openapi").output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["openapi"], "3.1.0");
    assert!(v["paths"]["/v1/reason"].is_object());
}

#[test]
fn check_config_redacts_secrets_and_rejects_bad_values() {
    let out = cmd()
        .arg("check-config")
        .env("GATEWAY_JWT_SECRET", "s3cret-s3cret-s3cret-s3cret-s3cret-1")
        .env("CHUTES_API_KEY", "cpk_very_secret")
        .env("GATEWAY_REDIS_URL", "redis://:pw-hunter2@127.0.0.1:6379")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("listen"), "{all}");
    for secret in ["s3cret-s3cret", "cpk_very_secret", "pw-hunter2"] {
        assert!(!all.contains(secret), "{secret} leaked: {all}");
    }

    let out = cmd()
        .arg("check-config")
        .env("GATEWAY_MAX_BODY_BYTES", "lots")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("GATEWAY_MAX_BODY_BYTES"));

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gw.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:9\"\nlistne = 1\n").unwrap();
    let out = cmd()
        .args(["check-config", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("listne"));
}

/// Kills the child if the test fails before it exits, so no gateway outlives its test.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn serve_answers_then_exits_zero_on_sigterm() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = cmd()
        .arg("serve")
        .env("GATEWAY_LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let child = &mut child.0;
    // The dev token is printed once, on stdout.
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = out.next().unwrap().unwrap();
    let dev_token = first
        .strip_prefix("dev token: ")
        .unwrap_or_else(|| panic!("first stdout line is the dev token: {first}"))
        .to_string();
    // The log says when it listens; read until then (bounded by the child's own output).
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        log.push_str(&line);
        log.push('\n');
        if line.contains("listening on") {
            break;
        }
    }
    assert!(
        log.contains("SIMULATED UPSTREAM"),
        "loud simulator warning: {log}"
    );

    affine_gateway::upstream::client::install_crypto_provider();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let body: serde_json::Value = rt.block_on(async {
        reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/v1/reason"))
            .bearer_auth(&dev_token)
            .header("content-type", "application/json")
            .body(r#"{"input":"2+2?"}"#)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(body["object"], "reason.result");
    // Nothing is callable without credentials.
    let status = rt.block_on(async {
        reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/v1/reason"))
            .header("content-type", "application/json")
            .body(r#"{"input":"2+2?"}"#)
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, 401);

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "gateway did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(exit.code(), Some(0));
}

#[test]
fn token_issue_prints_a_verifiable_token_and_refuses_without_a_secret() {
    let secret = "cli-secret-cli-secret-cli-secret-0001";
    let out = cmd()
        .args([
            "token",
            "issue",
            "--sub",
            "acme",
            "--scope",
            "reason,admin",
            "--ttl",
            "15m",
        ])
        .env("GATEWAY_JWT_SECRET", secret)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "the token alone, on one line");
    let keys = affine_gateway::auth::jwt::JwtKeys::new(secret.as_bytes(), Duration::ZERO);
    let claims = keys.verify(stdout.trim()).unwrap();
    assert_eq!(claims.sub, "acme");
    assert_eq!(claims.scope, "reason admin");
    assert!(claims.exp - claims.iat == 900);
    assert!(!claims.jti.is_empty());

    let out = cmd()
        .args([
            "token", "issue", "--sub", "acme", "--scope", "reason", "--ttl", "1h",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("GATEWAY_JWT_SECRET"));
    for (scope, ttl) in [("root", "1h"), ("reason", "1y"), ("reason", "0s")] {
        let out = cmd()
            .args([
                "token", "issue", "--sub", "acme", "--scope", scope, "--ttl", ttl,
            ])
            .env("GATEWAY_JWT_SECRET", secret)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{scope} {ttl}");
    }
}
