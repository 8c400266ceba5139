//! The `affine-gateway` binary: its subcommands, its behaviour on SIGTERM, and replicas
//! started side by side in one directory.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
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
        "GATEWAY_JOURNAL_PATH",
        "GATEWAY_KEY_PREFIX",
        "GATEWAY_JWT_SECRET_PREVIOUS",
        "GATEWAY_CONFIG",
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

/// `POST /v1/reason` with `body` and a bearer `token` to the gateway on 127.0.0.1:`port`: the
/// JSON answer.
fn reason_json(
    rt: &tokio::runtime::Runtime,
    port: u16,
    token: &str,
    body: &'static str,
) -> serde_json::Value {
    rt.block_on(async {
        reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/v1/reason"))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    })
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
    let body = reason_json(&rt, port, &dev_token, r#"{"input":"2+2?"}"#);
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

/// A `serve` process whose log lines arrive on a channel, read by a thread so the child never
/// blocks on a full pipe.
struct Served {
    child: KillOnDrop,
    log: mpsc::Receiver<String>,
    seen: String,
}

impl Served {
    /// Starts `serve` in `dir` on 127.0.0.1:`port` with `env`.
    fn start(dir: &std::path::Path, port: u16, env: &[(&str, &str)]) -> Served {
        let mut c = cmd();
        c.arg("serve")
            .current_dir(dir)
            .env("GATEWAY_LISTEN", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Served {
            child: KillOnDrop(child),
            log,
            seen: String::new(),
        }
    }

    /// Reads the log until a line contains `what` (true) or the process closed its log
    /// (false, it exited), within 60 s.
    fn wait_for(&mut self, what: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push_str(&line);
                    self.seen.push('\n');
                    if line.contains(what) {
                        return true;
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return false,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("no log line with {what:?} within 60 s:\n{}", self.seen)
                }
            }
        }
    }
}

/// `n` distinct free loopback ports (held together while chosen, so they differ).
fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<_> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|i| held[i].local_addr().unwrap().port())
}

// issue #16: two replicas started in one directory with Redis and no journal setting both
// serve, each with its own journal named after its listen address; two that are told to share
// one journal still get the clear refusal.
#[test]
fn two_gateways_in_one_directory_with_redis_both_serve() {
    let dir = tempfile::tempdir().unwrap();
    let [p1, p2, p3] = free_ports();
    let redis = common::redis_url();
    let prefix = common::redis_prefix();
    let env = [
        ("GATEWAY_REDIS_URL", redis.as_str()),
        ("GATEWAY_KEY_PREFIX", prefix.as_str()),
        ("GATEWAY_JWT_SECRET", common::TEST_JWT_SECRET),
    ];
    let mut first = Served::start(dir.path(), p1, &env);
    assert!(first.wait_for("listening on"), "first: {}", first.seen);
    let mut second = Served::start(dir.path(), p2, &env);
    assert!(second.wait_for("listening on"), "second: {}", second.seen);

    for (port, served) in [(p1, &first), (p2, &second)] {
        let journal = format!("affine-gateway-127.0.0.1-{port}.journal");
        assert!(
            served.seen.contains(&journal),
            "the log names the journal {journal}: {}",
            served.seen
        );
        assert!(
            dir.path().join(format!("{journal}.lock")).exists(),
            "{journal} is locked in the working directory"
        );
    }

    affine_gateway::upstream::client::install_crypto_provider();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let http = reqwest::Client::new();
    let res = rt.block_on(common::put_account(
        &http,
        &format!("http://127.0.0.1:{p1}"),
        common::TEST_ACCOUNT,
        r#"{"billing":"postpaid","credit_limit_rao":1000000000000}"#,
    ));
    assert!(res.status().is_success(), "{}", res.status());
    let token = common::token(
        common::TEST_ACCOUNT,
        &[affine_gateway::auth::jwt::Scope::Reason],
        600,
    );
    for port in [p1, p2] {
        let body = reason_json(&rt, port, &token, r#"{"input":"2+2?","max_tokens":16}"#);
        assert_eq!(body["object"], "reason.result", "replica on {port}: {body}");
    }

    // A third one told to use the first one's journal refuses to start, and says why.
    let shared = format!("affine-gateway-127.0.0.1-{p1}.journal");
    let mut env = env.to_vec();
    env.push(("GATEWAY_JOURNAL_PATH", shared.as_str()));
    let mut third = Served::start(dir.path(), p3, &env);
    assert!(
        !third.wait_for("listening on"),
        "a third gateway sharing a journal served: {}",
        third.seen
    );
    assert!(
        third.seen.contains(&format!(
            "settlement journal {shared} is in use by another gateway process; give each \
             replica its own GATEWAY_JOURNAL_PATH"
        )),
        "{}",
        third.seen
    );
    let status = third.child.0.wait().unwrap();
    assert!(!status.success());

    // The container health check: the binary probes /healthz of the configured address.
    let probe = |listen: String| {
        cmd()
            .args(["healthcheck", "--timeout-secs", "5"])
            .env("GATEWAY_LISTEN", listen)
            .output()
            .unwrap()
    };
    let out = probe(format!("127.0.0.1:{p2}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = probe(format!("0.0.0.0:{p1}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = probe(format!("127.0.0.1:{p3}"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unhealthy"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
