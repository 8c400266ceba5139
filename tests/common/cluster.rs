//! The Redis Cluster the cluster variants of the tests run on.
//!
//! `scripts/test.sh` starts one 3-master cluster for the whole run and names it in
//! [`CLUSTER_URL_ENV`]. A test process started without it (`cargo nextest run` by hand) starts
//! its own throwaway cluster instead of skipping: three `redis-server --cluster-enabled yes`
//! on free loopback ports, joined with `redis-cli --cluster create`, killed and removed when
//! the last test of the process holding it lets go of its [`TestRedis`].

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use affine_gateway::config::{Config, Secret};
use affine_gateway::store::Store;

/// Names the shared cluster (`redis+cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3`).
pub const CLUSTER_URL_ENV: &str = "AGW_TEST_REDIS_CLUSTER_URL";

/// The number of primaries of a throwaway cluster: the smallest Redis Cluster there is.
const PRIMARIES: usize = 3;

/// How long a throwaway cluster may take to form before the test fails.
const FORM_DEADLINE: Duration = Duration::from_secs(30);

/// The Redis of one test: the shared single server or a Redis Cluster. Keep it alive as long
/// as the test uses the Redis: a throwaway cluster goes when its last holder drops it.
pub struct TestRedis {
    url: String,
    cluster: bool,
    _throwaway: Option<Arc<Throwaway>>,
}

impl TestRedis {
    /// The shared single Redis ([`super::redis_url`]).
    pub fn single() -> TestRedis {
        TestRedis {
            url: super::redis_url(),
            cluster: false,
            _throwaway: None,
        }
    }

    /// The shared cluster named by [`CLUSTER_URL_ENV`], or this process's throwaway one.
    pub fn cluster() -> TestRedis {
        if let Some(url) = std::env::var(CLUSTER_URL_ENV)
            .ok()
            .filter(|u| !u.is_empty())
        {
            return TestRedis {
                url,
                cluster: true,
                _throwaway: None,
            };
        }
        let throwaway = Throwaway::shared();
        TestRedis {
            url: throwaway.url.clone(),
            cluster: true,
            _throwaway: Some(throwaway),
        }
    }

    /// True on the cluster.
    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// The URL (no password on the test servers).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A store on this Redis under a fresh prefix, with 2 s connect and command timeouts.
    pub async fn store(&self) -> Store {
        Store::redis(
            &self.url,
            &super::redis_prefix(),
            Duration::from_secs(2),
            Duration::from_secs(2),
        )
        .await
        .unwrap_or_else(|e| {
            panic!(
                "these tests need the Redis named by {} (default {}) and the cluster named by \
                 {CLUSTER_URL_ENV} (or redis-server and redis-cli to start one); connecting \
                 failed: {e}",
                super::REDIS_URL_ENV,
                super::DEFAULT_REDIS_URL
            )
        })
    }

    /// Points `cfg` at this Redis under a fresh prefix.
    pub fn configure(&self, cfg: &mut Config) {
        cfg.redis.url = Some(Secret::new(self.url.clone()));
        cfg.redis.key_prefix = super::redis_prefix();
    }
}

/// A throwaway cluster: its servers and their directory, both gone on drop.
struct Throwaway {
    url: String,
    servers: Vec<Child>,
    _dir: tempfile::TempDir,
}

/// The throwaway cluster of this process while some test holds it.
static SHARED: Mutex<Weak<Throwaway>> = Mutex::new(Weak::new());

impl Throwaway {
    fn shared() -> Arc<Throwaway> {
        // Held while starting, so concurrent tests of one process share one cluster.
        let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = shared.upgrade() {
            return c;
        }
        let c = Arc::new(Throwaway::start());
        *shared = Arc::downgrade(&c);
        c
    }

    fn start() -> Throwaway {
        let dir = tempfile::Builder::new()
            .prefix("agw-test-cluster.")
            .tempdir()
            .expect("temporary directory for the cluster");
        let mut servers = Vec::new();
        let mut ports = Vec::new();
        let deadline = Instant::now() + FORM_DEADLINE;
        while ports.len() < PRIMARIES {
            assert!(
                Instant::now() < deadline,
                "could not start {PRIMARIES} cluster nodes"
            );
            let port = free_port();
            let mut child = Command::new("redis-server")
                .args(["--port", &port.to_string()])
                .args(["--cluster-enabled", "yes"])
                .arg("--cluster-config-file")
                .arg(dir.path().join(format!("nodes-{port}.conf")))
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir.path())
                .arg("--logfile")
                .arg(dir.path().join(format!("redis-{port}.log")))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server runs (install redis-server to run the cluster tests)");
            // A port taken between the check and the bind makes the server exit: try another.
            let running = move |c: &mut Child| matches!(c.try_wait(), Ok(None));
            let up = wait_until(deadline, || !running(&mut child) || answers(port))
                && running(&mut child);
            if up {
                servers.push(child);
                ports.push(port);
            } else {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let mut cluster = Throwaway {
            url: format!(
                "redis+cluster://{}",
                ports
                    .iter()
                    .map(|p| format!("127.0.0.1:{p}"))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            servers,
            _dir: dir,
        };
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(ports.iter().map(|p| format!("127.0.0.1:{p}")))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .expect("redis-cli runs (install redis-tools to run the cluster tests)");
        assert!(
            created.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&created.stderr)
        );
        let formed = wait_until(deadline, || {
            ports.iter().all(|p| {
                redis_cli(*p, &["cluster", "info"]).is_some_and(|i| i.contains("cluster_state:ok"))
            })
        });
        if !formed {
            cluster.stop();
            panic!("the throwaway cluster did not reach cluster_state:ok");
        }
        cluster
    }

    fn stop(&mut self) {
        for s in &mut self.servers {
            let _ = s.kill();
            let _ = s.wait();
        }
        self.servers.clear();
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loopback port that is free now and whose cluster bus port (+10000) stays below Linux's
/// ephemeral range (32768+), which the kernel hands out to the tests' own sockets.
fn free_port() -> u16 {
    loop {
        let port = rand::random_range(20_000..22_700);
        let free = |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(port) && free(port + 10_000) {
            return port;
        }
    }
}

fn answers(port: u16) -> bool {
    redis_cli(port, &["ping"]).is_some_and(|r| r.trim() == "PONG")
}

fn redis_cli(port: u16, args: &[&str]) -> Option<String> {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Polls `ready` every 50 ms until it holds (true) or `deadline` passes (false). Starting
/// servers is outside any runtime's clock, so this is the one blocking poll of the harness.
fn wait_until(deadline: Instant, mut ready: impl FnMut() -> bool) -> bool {
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
