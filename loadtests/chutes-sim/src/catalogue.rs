//! The model catalogue: which models the simulator serves (and which are still deploying),
//! their prices, and the `GET /v1/models` body built from them.
//!
//! A deploy with a delay is stored with the instant it becomes ready and counts as served from
//! then on, so nothing runs in the background and paused tokio time works: every read and
//! write compares against [`Instant::now`].

use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};

use bytes::Bytes;
use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::fixtures;

/// A model in the catalogue, as [`SimState::served_models`](crate::SimState::served_models)
/// and [`SimState::pending_deploys`](crate::SimState::pending_deploys) report it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServedModel {
    /// Hugging Face repo id, the `model` clients send.
    pub id: String,
    /// Revision named by the deploy webhook; `None` for models served from the start or by
    /// [`SimState::deploy_model`](crate::SimState::deploy_model) (any revision).
    pub revision: Option<String>,
}

/// What a deploy or retire call did, as the webhook's answer says (`state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A deploy started (or restarted for another revision); served after the delay.
    Deploying,
    /// That revision was already deploying: nothing changed, the delay was not restarted.
    AlreadyDeploying,
    /// That model (and revision, or no revision) is served already: nothing changed.
    Served,
    /// Retire: the model is no longer in the catalogue.
    Retired,
    /// Retire of a model that was not in the catalogue.
    Absent,
}

impl Outcome {
    /// The `state` field of the webhook's answer.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Deploying | Outcome::AlreadyDeploying => "deploying",
            Outcome::Served => "served",
            Outcome::Retired => "retired",
            Outcome::Absent => "absent",
        }
    }
}

#[derive(Debug)]
struct Entry {
    id: String,
    /// `Some` while served, holding the served revision.
    served: Option<Option<String>>,
    /// A deploy in its delay: revision and when it becomes served.
    pending: Option<(Option<String>, Instant)>,
}

impl Entry {
    /// Promotes a deploy whose delay is over.
    fn settle(&mut self, now: Instant) {
        if let Some((rev, ready)) = &self.pending
            && *ready <= now
        {
            self.served = Some(rev.clone());
            self.pending = None;
        }
    }

    fn serves(&self, now: Instant) -> bool {
        self.served.is_some() || self.pending.as_ref().is_some_and(|(_, at)| *at <= now)
    }

    fn served_revision(&self, now: Instant) -> Option<Option<String>> {
        match &self.pending {
            Some((rev, at)) if *at <= now => Some(rev.clone()),
            _ => self.served.clone(),
        }
    }
}

/// The catalogue. Its lock is held only to read or change it, never across an await.
#[derive(Debug)]
pub(crate) struct Models {
    inner: RwLock<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// In `/v1/models` order.
    entries: Vec<Entry>,
    /// `price` field overrides: raw JSON text, or `None` to leave the field out.
    prices: HashMap<String, Option<String>>,
}

/// The fixture's entries, parsed once.
fn fixture_entries() -> &'static [Map<String, Value>] {
    static ENTRIES: OnceLock<Vec<Map<String, Value>>> = OnceLock::new();
    ENTRIES.get_or_init(|| {
        serde_json::from_str::<Value>(fixtures::MODELS)
            .ok()
            .and_then(|v| v.get("data").and_then(Value::as_array).cloned())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|e| match e {
                Value::Object(m) => Some(m),
                _ => None,
            })
            .collect()
    })
}

/// The fixture entry of `id`, else the first one renamed to `id`.
fn base_entry(id: &str) -> Map<String, Value> {
    let entries = fixture_entries();
    let mut base = entries
        .iter()
        .find(|e| e.get("id").and_then(Value::as_str) == Some(id))
        .or_else(|| entries.first())
        .cloned()
        .unwrap_or_default();
    base.insert("id".to_owned(), Value::from(id));
    base.insert("root".to_owned(), Value::from(id));
    base
}

/// `price` of the fixture's first entry in USD, kept when only the TAO values are set.
fn default_usd(side: &str) -> Value {
    fixture_entries()
        .first()
        .and_then(|e| e.get("price"))
        .and_then(|p| p.get(side))
        .and_then(|s| s.get("usd"))
        .cloned()
        .unwrap_or(Value::Null)
}

/// `text` verbatim when it is a JSON number, else as a JSON string.
fn number_or_string(text: &str) -> String {
    if serde_json::from_str::<serde_json::Number>(text).is_ok() {
        text.trim().to_owned()
    } else {
        Value::from(text).to_string()
    }
}

impl Models {
    /// `primary` (in the place of the fixture's first entry), then the fixture's other models:
    /// all served, at no particular revision.
    pub(crate) fn new(primary: &str) -> Self {
        let mut entries = vec![served(primary)];
        for e in fixture_entries().iter().skip(1) {
            if let Some(id) = e.get("id").and_then(Value::as_str)
                && id != primary
            {
                entries.push(served(id));
            }
        }
        Self {
            inner: RwLock::new(Inner {
                entries,
                prices: HashMap::new(),
            }),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        // Every change is complete before the guard drops; a poisoned lock is still consistent.
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self, now: Instant) -> std::sync::RwLockWriteGuard<'_, Inner> {
        let mut inner = self
            .inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for e in &mut inner.entries {
            e.settle(now);
        }
        inner
    }

    /// Whether chat completions for `model` are answered now.
    pub(crate) fn serves(&self, model: &str) -> bool {
        let now = Instant::now();
        self.read()
            .entries
            .iter()
            .any(|e| e.id == model && e.serves(now))
    }

    /// Served models, in `/v1/models` order.
    pub(crate) fn served(&self) -> Vec<ServedModel> {
        let now = Instant::now();
        self.read()
            .entries
            .iter()
            .filter_map(|e| {
                e.served_revision(now).map(|revision| ServedModel {
                    id: e.id.clone(),
                    revision,
                })
            })
            .collect()
    }

    /// Deploys still in their delay.
    pub(crate) fn pending(&self) -> Vec<ServedModel> {
        let now = Instant::now();
        self.read()
            .entries
            .iter()
            .filter_map(|e| match &e.pending {
                Some((rev, at)) if *at > now => Some(ServedModel {
                    id: e.id.clone(),
                    revision: rev.clone(),
                }),
                _ => None,
            })
            .collect()
    }

    /// Serves `model` at once (a pending deploy of it completes now); `first` lists it first.
    pub(crate) fn deploy_now(&self, model: &str, first: bool) {
        let mut inner = self.write(Instant::now());
        match inner.entries.iter().position(|e| e.id == model) {
            Some(i) => {
                let e = &mut inner.entries[i];
                if let Some((rev, _)) = e.pending.take() {
                    e.served = Some(rev);
                } else if e.served.is_none() {
                    e.served = Some(None);
                }
                if first {
                    let e = inner.entries.remove(i);
                    inner.entries.insert(0, e);
                }
            }
            None if first => inner.entries.insert(0, served(model)),
            None => inner.entries.push(served(model)),
        }
    }

    /// A deploy webhook: `model`@`revision` served once `delay` has passed, idempotently.
    pub(crate) fn deploy(
        &self,
        model: &str,
        revision: Option<&str>,
        delay: std::time::Duration,
    ) -> Outcome {
        let now = Instant::now();
        let mut inner = self.write(now);
        let revision = revision.map(str::to_owned);
        let ready = now + delay;
        let Some(e) = inner.entries.iter_mut().find(|e| e.id == model) else {
            inner.entries.push(Entry {
                id: model.to_owned(),
                served: None,
                pending: Some((revision, ready)),
            });
            return settled_outcome(inner.entries.last_mut(), now);
        };
        match &e.served {
            // Served with that revision, or with no revision (any) while none is asked for.
            Some(served) if *served == revision || revision.is_none() => return Outcome::Served,
            // Served at no particular revision: it now is that revision.
            Some(None) => {
                e.served = Some(revision);
                e.pending = None;
                return Outcome::Served;
            }
            _ => {}
        }
        if e.pending.as_ref().is_some_and(|(rev, _)| *rev == revision) {
            return Outcome::AlreadyDeploying;
        }
        // Another revision: deploy it; the served one (if any) keeps serving meanwhile.
        e.pending = Some((revision, ready));
        settled_outcome(Some(e), now)
    }

    /// Removes `model`, served or deploying.
    pub(crate) fn retire(&self, model: &str) -> Outcome {
        let mut inner = self.write(Instant::now());
        let before = inner.entries.len();
        inner.entries.retain(|e| e.id != model);
        if inner.entries.len() < before {
            Outcome::Retired
        } else {
            Outcome::Absent
        }
    }

    /// Sets the `price` field of `model` (served or not) to raw JSON text, or removes it.
    pub(crate) fn set_price_raw(&self, model: &str, price: Option<String>) {
        self.write(Instant::now())
            .prices
            .insert(model.to_owned(), price);
    }

    /// `price` with these TAO values and the fixture's USD values.
    pub(crate) fn tao_price(input_tao: &str, output_tao: &str) -> String {
        format!(
            r#"{{"input":{{"usd":{},"tao":{}}},"output":{{"usd":{},"tao":{}}}}}"#,
            default_usd("input"),
            number_or_string(input_tao),
            default_usd("output"),
            number_or_string(output_tao),
        )
    }

    /// The `GET /v1/models` body: the served models in the Chutes shape.
    pub(crate) fn body(&self) -> Bytes {
        let now = Instant::now();
        let inner = self.read();
        let mut out = String::from(r#"{"object":"list","data":["#);
        let mut first = true;
        for e in inner.entries.iter().filter(|e| e.serves(now)) {
            let mut base = base_entry(&e.id);
            let default_price = base.remove("price").map(|p| p.to_string());
            let price = match inner.prices.get(&e.id) {
                Some(set) => set.clone(),
                None => default_price,
            };
            let mut json = Value::Object(base).to_string();
            if let Some(price) = price {
                json.pop(); // the closing brace; `base` always has `id`, so a comma follows
                json.push_str(r#","price":"#);
                json.push_str(&price);
                json.push('}');
            }
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(&json);
        }
        out.push_str("]}");
        Bytes::from(out)
    }
}

fn served(id: &str) -> Entry {
    Entry {
        id: id.to_owned(),
        served: Some(None),
        pending: None,
    }
}

/// [`Outcome::Served`] when a deploy with no delay completed on the spot, else deploying.
fn settled_outcome(entry: Option<&mut Entry>, now: Instant) -> Outcome {
    match entry {
        Some(e) => {
            e.settle(now);
            if e.pending.is_none() {
                Outcome::Served
            } else {
                Outcome::Deploying
            }
        }
        None => Outcome::Deploying,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ids(m: &Models) -> Vec<String> {
        m.served().into_iter().map(|s| s.id).collect()
    }

    #[test]
    fn the_default_catalogue_is_the_fixture() {
        let m = Models::new(crate::DEFAULT_MODEL);
        let v: Value = serde_json::from_slice(&m.body()).unwrap();
        let fixture: Value = serde_json::from_str(fixtures::MODELS).unwrap();
        assert_eq!(v, fixture);
        assert_eq!(
            ids(&m),
            [crate::DEFAULT_MODEL, "deepseek-ai/DeepSeek-R1-0528"]
        );
    }

    #[test]
    fn price_text_is_printed_verbatim() {
        let m = Models::new("org/A");
        m.set_price_raw(
            "org/A",
            Some(Models::tao_price("0.0100000000000000001", "-1")),
        );
        m.set_price_raw("deepseek-ai/DeepSeek-R1-0528", None);
        let body = String::from_utf8(m.body().to_vec()).unwrap();
        assert!(body.contains(r#""tao":0.0100000000000000001}"#), "{body}");
        assert!(body.contains(r#""tao":-1}"#), "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(v["data"][1].get("price").is_none());
        assert!(Models::tao_price("x", "1").contains(r#""tao":"x""#));
    }

    #[tokio::test(start_paused = true)]
    async fn a_deploy_is_served_after_its_delay_and_only_once() {
        let m = Models::new("org/A");
        let d = Duration::from_secs(5);
        assert_eq!(m.deploy("org/B", Some("r1"), d), Outcome::Deploying);
        assert!(!m.serves("org/B"));
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(m.deploy("org/B", Some("r1"), d), Outcome::AlreadyDeploying);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(m.serves("org/B"), "the delay was not restarted");
        assert_eq!(m.deploy("org/B", Some("r1"), d), Outcome::Served);
        // Another revision deploys while the old one keeps serving.
        assert_eq!(m.deploy("org/B", Some("r2"), d), Outcome::Deploying);
        assert!(m.serves("org/B"));
        assert_eq!(m.pending()[0].revision.as_deref(), Some("r2"));
        assert_eq!(m.retire("org/B"), Outcome::Retired);
        assert_eq!(m.retire("org/B"), Outcome::Absent);
        assert!(m.pending().is_empty() && !m.serves("org/B"));
        assert_eq!(m.deploy("org/C", None, Duration::ZERO), Outcome::Served);
        assert!(m.serves("org/C"));
    }
}
