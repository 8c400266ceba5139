//! `chain-sim` binary: one simulated Subtensor chain served by an archive listener and,
//! optionally, a lite one; serves until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::process::ExitCode;

use chain_sim::{ChainConfig, ChainSim, DEFAULT_SPEC_VERSION, Role};
use clap::Parser;

/// Simulated Subtensor node (JSON-RPC over HTTP) for tests and load tests.
#[derive(Debug, Parser)]
#[command(name = "chain-sim", version, about)]
struct Cli {
    /// Address of the archive listener.
    #[arg(long, default_value = "127.0.0.1:9944")]
    listen: SocketAddr,
    /// Address of an additional lite (pruning) listener over the same chain.
    #[arg(long)]
    lite_listen: Option<SocketAddr>,
    /// Blocks of state the lite listener keeps behind the head.
    #[arg(long, default_value_t = 256)]
    lite_retention: u64,
    /// Produce a block every this many milliseconds; 0 only on `POST /_chain/blocks`.
    #[arg(long, default_value_t = 0)]
    block_ms: u64,
    /// Blocks produced at start.
    #[arg(long, default_value_t = 1000)]
    head: u64,
    /// Blocks the finalized block trails the head by.
    #[arg(long, default_value_t = 2)]
    finality_lag: u64,
    /// Spec version of the initial runtime.
    #[arg(long, default_value_t = DEFAULT_SPEC_VERSION)]
    spec_version: u32,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let chain = ChainSim::with_config(ChainConfig {
        head: cli.head,
        spec_version: cli.spec_version,
        finality_lag: cli.finality_lag,
        block_ms: (cli.block_ms > 0).then_some(cli.block_ms),
    });
    let archive = match chain.serve_on(cli.listen, Role::Archive).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("chain-sim: cannot listen on {}: {e}", cli.listen);
            return ExitCode::FAILURE;
        }
    };
    let lite = match cli.lite_listen {
        Some(addr) => match chain
            .serve_on(
                addr,
                Role::Lite {
                    retention: cli.lite_retention,
                },
            )
            .await
        {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!("chain-sim: cannot listen on {addr}: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    // Scripts wait for these exact lines on stdout before starting load.
    if let Some(lite) = &lite {
        println!("chain-sim lite listening on {}", lite.url());
    }
    println!("chain-sim listening on {}", archive.url());
    if let Err(e) = stop_signal().await {
        eprintln!("chain-sim: cannot wait for signals: {e}");
    }
    chain.stop_block_production();
    if let Some(lite) = lite {
        lite.shutdown().await;
    }
    archive.shutdown().await;
    ExitCode::SUCCESS
}

/// Resolves on SIGINT or SIGTERM.
async fn stop_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}
