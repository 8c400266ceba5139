//! `affine-gateway`: the command line. Everything it runs lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use affine_gateway::config::Config;
use clap::{Parser, Subcommand};

// A server's allocator: per-thread free lists, no lock on the hot path; measured in
// loadtests/cpu.sh against glibc's (issue #15).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The Affine Reasoning API gateway.
#[derive(Debug, Parser)]
#[command(name = "affine-gateway", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// TOML configuration file (environment variables override it).
        #[arg(long, value_name = "FILE", env = "GATEWAY_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Print the OpenAPI 3.1 document (JSON) to stdout.
    Openapi,
    /// Validate the configuration and print the effective one with secrets redacted.
    CheckConfig {
        /// TOML configuration file (environment variables override it).
        #[arg(long, value_name = "FILE", env = "GATEWAY_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Exit 0 when the gateway configured here answers GET /healthz with 200 (container
    /// health checks: the runtime image has no shell or curl), 1 otherwise.
    Healthcheck {
        /// TOML configuration file (environment variables override it).
        #[arg(long, value_name = "FILE", env = "GATEWAY_CONFIG")]
        config: Option<PathBuf>,
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 3)]
        timeout_secs: u64,
    },
    /// Bearer tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// The money ledger in Redis.
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },
}

#[derive(Debug, Subcommand)]
enum LedgerCommand {
    /// Check, to the rao, that credits − debits = balances and usage events = debits; list
    /// every discrepancy and exit 1 if there is one (2 if the ledger cannot be read).
    Reconcile {
        /// TOML configuration file (environment variables override it).
        #[arg(long, value_name = "FILE", env = "GATEWAY_CONFIG")]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Print a JWT signed with the configured secret (GATEWAY_JWT_SECRET).
    Issue {
        /// Subject: the account id (enterprise slug or hotkey), or an operator name for admin tokens.
        #[arg(long)]
        sub: String,
        /// Scopes, comma-separated: `reason`, `admin`.
        #[arg(long)]
        scope: String,
        /// Lifetime: `30s`, `15m`, `1h`, `7d` (at most 366d).
        #[arg(long)]
        ttl: String,
        /// TOML configuration file (environment variables override it).
        #[arg(long, value_name = "FILE", env = "GATEWAY_CONFIG")]
        config: Option<PathBuf>,
    },
}

fn load(path: Option<&PathBuf>) -> Result<Config, ExitCode> {
    Config::load(path.map(|p| p.as_path()), |k| std::env::var(k).ok())
        .and_then(|c| affine_gateway::server::check(&c).map(|()| c))
        .map_err(|e| {
            eprintln!("affine-gateway: invalid configuration: {e}");
            ExitCode::from(2)
        })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Openapi => {
            println!("{}", affine_gateway::http::docs::openapi_json());
            ExitCode::SUCCESS
        }
        Command::CheckConfig { config } => match load(config.as_ref()) {
            Ok(cfg) => {
                print!("{}", cfg.to_redacted_toml());
                for w in cfg.warnings() {
                    eprintln!("warning: {w}");
                }
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Healthcheck {
            config,
            timeout_secs,
        } => {
            let cfg = match load(config.as_ref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let timeout = std::time::Duration::from_secs(timeout_secs.max(1));
            match affine_gateway::server::healthcheck(&cfg, timeout) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("affine-gateway: unhealthy: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Token {
            command:
                TokenCommand::Issue {
                    sub,
                    scope,
                    ttl,
                    config,
                },
        } => {
            let cfg = match load(config.as_ref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match affine_gateway::auth::jwt::issue_cli_token(&cfg, &sub, &scope, &ttl) {
                Ok(token) => {
                    println!("{token}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("affine-gateway: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Ledger {
            command: LedgerCommand::Reconcile { config },
        } => {
            let cfg = match load(config.as_ref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("affine-gateway: cannot start the runtime: {e}");
                    return ExitCode::from(2);
                }
            };
            match rt.block_on(affine_gateway::metering::reconcile::run(&cfg)) {
                Ok(report) => {
                    println!("{report}");
                    if report.is_clean() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    eprintln!("affine-gateway: ledger reconcile: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Serve { config } => {
            let cfg = match load(config.as_ref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            affine_gateway::server::init_tracing(cfg.log_format);
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(cfg.server.worker_threads())
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("affine-gateway: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let result = rt.block_on(affine_gateway::server::run(cfg));
            affine_gateway::telemetry::shutdown();
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    eprintln!("affine-gateway: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
