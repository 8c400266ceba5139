//! `chutes-sim` binary: parses the command line, serves until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use chutes_sim::{
    Catalogue, DEFAULT_DEPLOY_DELAY, DEFAULT_MODEL, Fault, FaultKind, ReasoningStyle, Sim,
    SimConfig, Trigger,
};
use clap::{ArgGroup, Parser, ValueEnum};

/// Simulated Chutes upstream (OpenAI-compatible) for tests and load tests.
#[derive(Debug, Parser)]
#[command(name = "chutes-sim", version, about)]
#[command(group(ArgGroup::new("fault_kind").args(["fault_status", "fault"])))]
#[command(group(ArgGroup::new("fault_trigger").args(["fault_probability", "fault_nth", "fault_every"])))]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// The only model served.
    #[arg(long, default_value = DEFAULT_MODEL)]
    model: String,
    /// Seed of all randomness (text, ids, fault probability).
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Delay before the first token, in milliseconds.
    #[arg(long, default_value_t = 0)]
    ttft_ms: u64,
    /// Pacing of streamed tokens after the first; 0 sends them at once.
    #[arg(long, default_value_t = 0.0)]
    tokens_per_sec: f64,
    /// Words of reasoning per answer.
    #[arg(long, default_value_t = 24)]
    reasoning_tokens: usize,
    /// Words of the final answer.
    #[arg(long, default_value_t = 16)]
    output_tokens: usize,
    /// Where the reasoning goes.
    #[arg(long, value_enum, default_value_t = StyleArg::ReasoningContent)]
    reasoning_style: StyleArg,
    /// Stream deltas of this many characters instead of one word each.
    #[arg(long)]
    delta_chars: Option<usize>,
    /// Write streamed bodies as HTTP frames of this many bytes.
    #[arg(long)]
    fragment_bytes: Option<usize>,
    /// Answer chat completions with this status and Chutes' error body.
    #[arg(long, value_name = "CODE")]
    fault_status: Option<u16>,
    /// Answer chat completions with garbage, a cut connection, or silence.
    #[arg(long, value_enum)]
    fault: Option<FaultArg>,
    /// SSE events sent before `disconnect` / `stall-after` strike.
    #[arg(long, default_value_t = 2)]
    fault_after_chunks: usize,
    /// Fault each request with this probability (default: every request).
    #[arg(long, value_name = "P")]
    fault_probability: Option<f64>,
    /// Fault only the N-th chat completion (1-based).
    #[arg(long, value_name = "N")]
    fault_nth: Option<u64>,
    /// Fault every N-th chat completion.
    #[arg(long, value_name = "N")]
    fault_every: Option<u64>,
    /// Require `Authorization: Bearer KEY`.
    #[arg(long, value_name = "KEY")]
    require_api_key: Option<String>,
    /// Keep the last N requests for `GET /_sim/requests`; 0 for benchmarks.
    #[arg(long, default_value_t = 256)]
    record_requests: usize,
    /// `strict`: chat completions for a model not served get 404 `model not found`;
    /// `open`: any model is answered.
    #[arg(long, value_enum, env = "CHUTES_SIM_CATALOGUE", default_value_t = CatalogueArg::Strict)]
    catalogue: CatalogueArg,
    /// Secret of the deploy/retire webhooks' `X-Affine-Signature` (unsigned calls then get
    /// 401); prefer the environment variable, which `ps` does not show.
    #[arg(long, env = "CHUTES_SIM_WEBHOOK_SECRET", hide_env_values = true)]
    webhook_secret: Option<String>,
    /// Milliseconds from an accepted deploy webhook until its model is served.
    #[arg(long, env = "CHUTES_SIM_DEPLOY_DELAY_MS", default_value_t = DEFAULT_DEPLOY_DELAY.as_millis() as u64)]
    deploy_delay_ms: u64,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum CatalogueArg {
    Strict,
    Open,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum StyleArg {
    ReasoningContent,
    ThinkTags,
    None,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum FaultArg {
    Garbage,
    Disconnect,
    Stall,
    StallAfter,
}

impl Cli {
    fn config(&self) -> SimConfig {
        let kind = match (self.fault_status, self.fault) {
            (Some(code), _) => Some(FaultKind::Status(code)),
            (None, Some(FaultArg::Garbage)) => Some(FaultKind::Garbage),
            (None, Some(FaultArg::Disconnect)) => Some(FaultKind::Disconnect {
                after_chunks: self.fault_after_chunks,
            }),
            (None, Some(FaultArg::Stall)) => Some(FaultKind::Stall),
            (None, Some(FaultArg::StallAfter)) => Some(FaultKind::StallAfter {
                after_chunks: self.fault_after_chunks,
            }),
            (None, None) => None,
        };
        let trigger = match (self.fault_probability, self.fault_nth, self.fault_every) {
            (Some(p), _, _) => Trigger::Probability(p),
            (_, Some(n), _) => Trigger::NthRequest(n),
            (_, _, Some(n)) => Trigger::EveryNth(n),
            _ => Trigger::Always,
        };
        SimConfig {
            model: self.model.clone(),
            seed: self.seed,
            ttft: Duration::from_millis(self.ttft_ms),
            tokens_per_sec: self.tokens_per_sec,
            reasoning_tokens: self.reasoning_tokens,
            output_tokens: self.output_tokens,
            reasoning_style: match self.reasoning_style {
                StyleArg::ReasoningContent => ReasoningStyle::ReasoningContent,
                StyleArg::ThinkTags => ReasoningStyle::ThinkTags,
                StyleArg::None => ReasoningStyle::None,
            },
            delta_chars: self.delta_chars,
            fragment_bytes: self.fragment_bytes,
            fault: Fault { kind, trigger },
            require_api_key: self.require_api_key.clone(),
            honour_max_tokens: true,
            record_requests: self.record_requests,
            catalogue: match self.catalogue {
                CatalogueArg::Strict => Catalogue::Strict,
                CatalogueArg::Open => Catalogue::Open,
            },
            webhook_secret: self.webhook_secret.clone(),
            deploy_delay: Duration::from_millis(self.deploy_delay_ms),
        }
    }
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
    let sim = match Sim::start_on(cli.listen, cli.config()).await {
        Ok(sim) => sim,
        Err(e) => {
            eprintln!("chutes-sim: cannot listen on {}: {e}", cli.listen);
            return ExitCode::FAILURE;
        }
    };
    // Scripts wait for this exact line on stdout before starting load.
    println!("chutes-sim listening on {}", sim.base_url());
    if let Err(e) = stop_signal().await {
        eprintln!("chutes-sim: cannot wait for signals: {e}");
    }
    sim.shutdown().await;
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
