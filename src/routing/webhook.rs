//! The deploy and retire webhooks: how the gateway asks the operator's pipeline to serve a
//! new champion, and to take down one nothing routes to any more.
//!
//! Each call is a `POST` of [`Announcement`] as JSON, signed with
//! `X-Affine-Signature: sha256=<lowercase hex HMAC-SHA256 of the raw body>` under
//! `winner.webhook_secret`, and carries `Idempotency-Key: <hook>:<model>@<revision>` so a
//! pipeline can drop a repeat. A 2xx is success; a connection failure, a timeout, a 429 or a
//! 5xx is retried with doubling backoff; any other status gives up (the receiver refused it).
//!
//! Once per champion, across replicas: before sending, a replica claims the champion in the
//! store (`SET NX`); the others see the claim and send nothing. A delivery that fails for good
//! gives the claim back, so the next poll (on any replica) tries again.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use sha2::Sha256;

use crate::config::{Config, Secret};
use crate::metrics::GateMetrics;
use crate::routing::Winner;
use crate::store::{Store, keys};

/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-Affine-Signature";

/// Deadline of one webhook attempt.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Attempts per delivery, the first included.
const ATTEMPTS: u32 = 6;

/// The first retry's wait; each next one doubles it.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// How long a claim outlives a delivery: a champion is announced once in this time.
const CLAIM_TTL: Duration = Duration::from_secs(30 * 86_400);

/// Which webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// A new champion should be served.
    Deploy,
    /// A replaced champion is no longer needed.
    Retire,
}

impl Hook {
    /// The metrics label and the idempotency key's first part.
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Deploy => "deploy",
            Hook::Retire => "retire",
        }
    }
}

/// The body of both webhooks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Announcement {
    /// Hugging Face repo, `org/model`.
    pub model: String,
    /// Commit of the model.
    pub revision: Option<String>,
    /// The miner's uid on Affine.
    pub uid: Option<u16>,
    /// The miner's hotkey.
    pub hotkey: Option<String>,
    /// The block since which Affine names it its champion.
    pub since_block: Option<u64>,
}

impl Announcement {
    /// What the webhooks say of `w`.
    pub fn of(w: &Winner) -> Announcement {
        Announcement {
            model: w.model.id.clone(),
            revision: w.model.revision.clone(),
            uid: w.model.uid,
            hotkey: w.model.miner_hotkey.clone(),
            since_block: w.model.since_block,
        }
    }

    fn spec(&self) -> String {
        match &self.revision {
            Some(r) => format!("{}@{r}", self.model),
            None => self.model.clone(),
        }
    }
}

/// `sha256=<hex>` of `body` under `secret`: the value of [`SIGNATURE_HEADER`].
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The configured webhooks; a hook without a URL is not called.
#[derive(Debug, Clone)]
pub struct Webhooks {
    http: reqwest::Client,
    deploy: Option<String>,
    retire: Option<String>,
    secret: Option<Secret>,
    store: Store,
    metrics: GateMetrics,
    first_backoff: Duration,
}

impl Webhooks {
    /// The webhooks of `config.winner`.
    pub fn new(config: &Config, store: Store, metrics: GateMetrics) -> Result<Webhooks, String> {
        crate::upstream::client::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            // A redirect would carry the signed body somewhere nobody configured.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("affine-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the webhook HTTP client: {e}"))?;
        let w = &config.winner;
        Ok(Webhooks {
            http,
            deploy: w.deploy_webhook.clone(),
            retire: w.retire_webhook.clone(),
            secret: w.webhook_secret.clone(),
            store,
            metrics,
            first_backoff: FIRST_BACKOFF,
        })
    }

    /// Whether `hook` has a URL.
    pub fn configured(&self, hook: Hook) -> bool {
        self.url(hook).is_some()
    }

    fn url(&self, hook: Hook) -> Option<&str> {
        match hook {
            Hook::Deploy => self.deploy.as_deref(),
            Hook::Retire => self.retire.as_deref(),
        }
    }

    /// Calls `hook` for `a` unless some replica already did (or is doing so). `true` when it
    /// is done, here or elsewhere; `false` when this delivery failed for good and the champion
    /// was given back for a later try.
    pub async fn announce(&self, hook: Hook, a: &Announcement) -> bool {
        let Some(url) = self.url(hook) else {
            return true;
        };
        let claim = keys::webhook_claim(hook.as_str(), &a.spec());
        match self.store.set_nx_px(&claim, b"1", CLAIM_TTL).await {
            Ok(true) => {}
            Ok(false) => return true,
            Err(e) => {
                tracing::warn!(hook = hook.as_str(), error = %e, "cannot claim the webhook call; trying at the next poll");
                return false;
            }
        }
        let body = serde_json::to_vec(a).unwrap_or_default();
        if self.deliver(hook, url, body, &a.spec()).await {
            return true;
        }
        if let Err(e) = self.store.del(&claim).await {
            tracing::warn!(hook = hook.as_str(), error = %e, "cannot give the webhook claim back; it expires");
        }
        false
    }

    async fn deliver(&self, hook: Hook, url: &str, body: Vec<u8>, spec: &str) -> bool {
        let label = hook.as_str();
        let sig = signature(
            self.secret
                .as_ref()
                .map_or(&b""[..], |s| s.expose().as_bytes()),
            &body,
        );
        let mut wait = self.first_backoff;
        for attempt in 1..=ATTEMPTS {
            let sent = self
                .http
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(SIGNATURE_HEADER, &sig)
                .header("Idempotency-Key", format!("{label}:{spec}"))
                .body(body.clone())
                .send()
                .await;
            let (retry, why) = match sent {
                Ok(res) if res.status().is_success() => {
                    self.count(label, "ok");
                    tracing::info!(hook = label, model = spec, "webhook delivered");
                    return true;
                }
                Ok(res) => {
                    let s = res.status().as_u16();
                    (s == 429 || s >= 500, format!("status {s}"))
                }
                // reqwest's errors name the URL, which may carry a token: say only what failed.
                Err(e) if e.is_timeout() => (true, "timed out".to_string()),
                Err(_) => (true, "unreachable".to_string()),
            };
            if !retry || attempt == ATTEMPTS {
                self.count(label, "failed");
                tracing::warn!(hook = label, model = spec, attempt, reason = %why, "webhook failed; trying again at the next poll");
                return false;
            }
            self.count(label, "retried");
            tracing::debug!(hook = label, model = spec, attempt, reason = %why, "webhook attempt failed; retrying");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(30));
        }
        false
    }

    fn count(&self, hook: &str, outcome: &str) {
        self.metrics
            .webhooks
            .with_label_values(&[hook, outcome])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hex_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn the_body_names_the_champion() {
        let mut w = Winner::from_spec("org/m@abc", crate::api::ModelSource::Affine).unwrap();
        w.model.uid = Some(7);
        w.model.since_block = Some(42);
        let body = serde_json::to_value(Announcement::of(&w)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"model": "org/m", "revision": "abc", "uid": 7,
                               "hotkey": null, "since_block": 42})
        );
    }
}
