//! The provider's model catalogue: `GET {base}/models`, as Chutes serves it.
//!
//! Two readers need it: provider-priced plans (`pricing = "provider"`, see
//! `crate::metering::provider`), which read each model's `price.input.tao` and
//! `price.output.tao` (TAO per 1M tokens), and the readiness gate, which asks whether an
//! upstream lists a model at all. [`CatalogueClient::fetch`] reads one upstream's catalogue on
//! its own and answers a typed [`CatalogueError`]; [`Catalogue::parse`] reads a body.
//!
//! Prices are money, so they are never read through a binary float: the TAO amount is taken
//! from the JSON number's own decimal text (serde_json's `raw_value`) and converted to whole
//! rao exactly ([`tao_to_rao`]). A price that is missing, zero, negative or not a number makes
//! that entry's [`CatalogueEntry::price`] `None` with the [`PriceProblem`]; the entry is still
//! listed. One malformed entry does not spoil the others.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue};
use serde::Deserialize;
use serde_json::value::RawValue;

/// The largest catalogue body read, bytes. Chutes lists a few hundred models (well under a
/// megabyte); whatever answers at the provider's address must not make the gateway buffer
/// without bound.
pub const MAX_CATALOGUE_BYTES: usize = 8 << 20;

/// Decimal places of a TAO amount that are whole rao (1 TAO = 10^9 rao).
const RAO_DECIMALS: i64 = 9;

/// A model's provider price, converted to whole rao per 1M tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderPrice {
    /// `price.input.tao`, in rao per 1M input tokens.
    pub input_rao_per_mtok: u64,
    /// `price.output.tao`, in rao per 1M output tokens.
    pub output_rao_per_mtok: u64,
}

/// Why a provider price is not used. The label values of
/// `agw_provider_price_rejected_total{reason}` are [`PriceProblem::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PriceProblem {
    /// The model is not listed, or its entry has no `price.input.tao` / `price.output.tao`.
    Missing,
    /// A price of zero: serving for free is never what a provider means.
    Zero,
    /// A negative price.
    Negative,
    /// Not a JSON number (a string, an object…), or beyond 2^64 rao.
    Unparsable,
    /// 100 times the last good price or more, or a hundredth of it or less (judged by the
    /// price poller, which knows the last good price).
    Jump,
}

/// Every [`PriceProblem`], as its label value.
pub const PRICE_PROBLEMS: &[&str] = &["missing", "zero", "negative", "unparsable", "jump"];

impl PriceProblem {
    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            PriceProblem::Missing => "missing",
            PriceProblem::Zero => "zero",
            PriceProblem::Negative => "negative",
            PriceProblem::Unparsable => "unparsable",
            PriceProblem::Jump => "jump",
        }
    }
}

/// One model the provider lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogueEntry {
    /// Its price, when both directions are usable.
    pub price: Option<ProviderPrice>,
    /// Why `price` is `None` (the first problem found, input before output).
    pub price_problem: Option<PriceProblem>,
    /// The context window in tokens (`max_model_len` on vLLM/SGLang and Chutes,
    /// `context_length` elsewhere), when listed.
    pub context_length: Option<u64>,
}

/// What one upstream's `GET /models` lists: model id → entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalogue {
    /// The listed models by id (a repeated id: the last entry counts).
    pub models: HashMap<String, CatalogueEntry>,
}

/// Why a catalogue could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogueError {
    /// The upstream could not be reached.
    #[error("catalogue unreachable")]
    Connect,
    /// It did not answer within the deadline.
    #[error("catalogue read timed out")]
    Timeout,
    /// It answered with a non-2xx status.
    #[error("catalogue answered {0}")]
    Status(u16),
    /// The body is longer than [`MAX_CATALOGUE_BYTES`].
    #[error("catalogue longer than {MAX_CATALOGUE_BYTES} bytes")]
    TooLarge,
    /// The body is not an OpenAI-style list (`{"data": [...]}`).
    #[error("catalogue malformed: {0}")]
    Malformed(String),
}

impl CatalogueError {
    /// A short label for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            CatalogueError::Connect => "connect",
            CatalogueError::Timeout => "timeout",
            CatalogueError::Status(_) => "status",
            CatalogueError::TooLarge => "too_large",
            CatalogueError::Malformed(_) => "malformed",
        }
    }
}

#[derive(Deserialize)]
struct RawList<'a> {
    #[serde(borrow)]
    data: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct RawEntry<'a> {
    id: String,
    #[serde(borrow)]
    price: Option<&'a RawValue>,
    #[serde(default)]
    max_model_len: Option<u64>,
    #[serde(default)]
    context_length: Option<u64>,
}

#[derive(Deserialize)]
struct RawPrice<'a> {
    #[serde(borrow)]
    input: Option<RawDirection<'a>>,
    #[serde(borrow)]
    output: Option<RawDirection<'a>>,
}

#[derive(Deserialize)]
struct RawDirection<'a> {
    #[serde(borrow)]
    tao: Option<&'a RawValue>,
}

impl Catalogue {
    /// Reads a `GET /models` body. Only the list's shape is required; an entry without a
    /// string `id` is skipped, an entry with an unusable price is kept with its problem.
    pub fn parse(body: &[u8]) -> Result<Catalogue, CatalogueError> {
        let text =
            std::str::from_utf8(body).map_err(|_| CatalogueError::Malformed("not UTF-8".into()))?;
        let list: RawList<'_> = serde_json::from_str(text)
            .map_err(|e| CatalogueError::Malformed(format!("not a model list: {e}")))?;
        let mut models = HashMap::with_capacity(list.data.len());
        for raw in list.data {
            let Ok(entry) = serde_json::from_str::<RawEntry<'_>>(raw.get()) else {
                continue;
            };
            let (price, price_problem) = match entry
                .price
                .map(price_of)
                .unwrap_or(Err(PriceProblem::Missing))
            {
                Ok(p) => (Some(p), None),
                Err(problem) => (None, Some(problem)),
            };
            models.insert(
                entry.id,
                CatalogueEntry {
                    price,
                    price_problem,
                    context_length: entry.max_model_len.or(entry.context_length),
                },
            );
        }
        Ok(Catalogue { models })
    }

    /// Whether the upstream lists `model`.
    pub fn lists(&self, model: &str) -> bool {
        self.models.contains_key(model)
    }

    /// `model`'s price, or why there is none ([`PriceProblem::Missing`] when it is not
    /// listed).
    pub fn price(&self, model: &str) -> Result<ProviderPrice, PriceProblem> {
        match self.models.get(model) {
            None => Err(PriceProblem::Missing),
            Some(e) => e
                .price
                .ok_or(e.price_problem.unwrap_or(PriceProblem::Missing)),
        }
    }
}

/// An entry's `price` object, both directions.
fn price_of(raw: &RawValue) -> Result<ProviderPrice, PriceProblem> {
    let p: RawPrice<'_> = serde_json::from_str(raw.get()).map_err(|_| PriceProblem::Unparsable)?;
    let direction = |d: Option<RawDirection<'_>>| -> Result<u64, PriceProblem> {
        let tao = d.and_then(|d| d.tao).ok_or(PriceProblem::Missing)?;
        tao_to_rao(tao.get())
    };
    Ok(ProviderPrice {
        input_rao_per_mtok: direction(p.input)?,
        output_rao_per_mtok: direction(p.output)?,
    })
}

/// A TAO amount written as a JSON number (`0.00045`, `4.375e-3`, `2`) in whole rao, exactly:
/// the decimal text is scaled by 10^9 as text, never through a float. A fraction of a rao is
/// rounded up (a price is never read below what the provider asks); providers quote at most
/// nine decimals, so in practice nothing rounds. Zero, negative amounts, anything that is not
/// a JSON number, and amounts of 2^64 rao or more are refused.
pub fn tao_to_rao(text: &str) -> Result<u64, PriceProblem> {
    let s = text.trim().as_bytes();
    let (negative, s) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    let digits_end = |s: &[u8]| {
        s.iter()
            .position(|b| !b.is_ascii_digit())
            .unwrap_or(s.len())
    };
    let int_len = digits_end(s);
    let (int, mut rest) = s.split_at(int_len);
    // JSON: at least one integer digit, and no leading zero before another digit.
    if int.is_empty() || (int.len() > 1 && int[0] == b'0') {
        return Err(PriceProblem::Unparsable);
    }
    let mut frac: &[u8] = &[];
    if let Some((b'.', after)) = rest.split_first() {
        let n = digits_end(after);
        if n == 0 {
            return Err(PriceProblem::Unparsable);
        }
        (frac, rest) = after.split_at(n);
    }
    let mut exponent: i64 = 0;
    if let Some((b'e' | b'E', after)) = rest.split_first() {
        let (sign, after) = match after.split_first() {
            Some((b'-', a)) => (-1, a),
            Some((b'+', a)) => (1, a),
            _ => (1, after),
        };
        let n = digits_end(after);
        if n == 0 {
            return Err(PriceProblem::Unparsable);
        }
        // An exponent past four digits moves any mantissa far outside u64 rao, or below one.
        let e = &after[..n];
        let e = if e.len() > 4 {
            "9999"
        } else {
            std::str::from_utf8(e).unwrap_or("0")
        };
        exponent = sign * e.parse::<i64>().unwrap_or(9999);
        rest = &after[n..];
    }
    if !rest.is_empty() {
        return Err(PriceProblem::Unparsable);
    }
    // value = digits × 10^scale, in rao.
    let mut digits: Vec<u8> = int.iter().chain(frac).copied().collect();
    let mut scale = exponent - frac.len() as i64 + RAO_DECIMALS;
    let leading = digits.iter().take_while(|&&d| d == b'0').count();
    digits.drain(..leading);
    while digits.last() == Some(&b'0') {
        digits.pop();
        scale += 1;
    }
    if digits.is_empty() {
        return Err(PriceProblem::Zero);
    }
    if negative {
        return Err(PriceProblem::Negative);
    }
    // A u128 holds any 38 decimal digits; more precision than that is no real price.
    if digits.len() > 38 {
        return Err(PriceProblem::Unparsable);
    }
    let mantissa = digits
        .iter()
        .fold(0u128, |acc, d| acc * 10 + u128::from(d - b'0'));
    let rao = if scale >= 0 {
        u32::try_from(scale)
            .ok()
            .and_then(|s| 10u128.checked_pow(s))
            .and_then(|p| mantissa.checked_mul(p))
            .ok_or(PriceProblem::Unparsable)?
    } else {
        match u32::try_from(-scale)
            .ok()
            .and_then(|s| 10u128.checked_pow(s))
        {
            Some(p) => mantissa.div_ceil(p),
            // Below 10^-38 rao: a positive amount under one rao, rounded up.
            None => 1,
        }
    };
    u64::try_from(rao).map_err(|_| PriceProblem::Unparsable)
}

/// A rao amount as TAO decimal text, exactly (`450000` → `0.00045`, `2000000000` → `2`): the
/// inverse of [`tao_to_rao`] for whole rao, for showing prices in Chutes' shape.
pub fn rao_to_tao_text(rao: u64) -> String {
    let whole = rao / 1_000_000_000;
    let frac = rao % 1_000_000_000;
    if frac == 0 {
        return whole.to_string();
    }
    let frac = format!("{frac:09}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

/// The `GET /models` URL of an OpenAI-compatible base URL.
pub fn models_url(base_url: &str) -> String {
    format!("{}/models", base_url.trim_end_matches('/'))
}

/// Reads catalogues: one pooled HTTP client, one deadline per read.
#[derive(Debug, Clone)]
pub struct CatalogueClient {
    http: reqwest::Client,
    timeout: Duration,
}

impl CatalogueClient {
    /// A client whose reads (connect to last byte) take at most `timeout`.
    pub fn new(timeout: Duration) -> Result<CatalogueClient, String> {
        crate::upstream::client::install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            // As for completions: a redirect could point the gateway at another host.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("affine-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the catalogue HTTP client: {e}"))?;
        Ok(CatalogueClient { http, timeout })
    }

    /// Reads the catalogue of the upstream at `base_url` (`{base_url}/models`), sending
    /// `api_key` as a Bearer token when given (Chutes' catalogue is public; other servers may
    /// want the key). The key never appears in an error.
    pub async fn fetch(
        &self,
        base_url: &str,
        api_key: Option<&str>,
    ) -> Result<Catalogue, CatalogueError> {
        let mut rb = self
            .http
            .get(models_url(base_url))
            .header(ACCEPT, HeaderValue::from_static("application/json"));
        if let Some(k) = api_key {
            let mut v = HeaderValue::try_from(format!("Bearer {k}")).map_err(|_| {
                CatalogueError::Malformed("the API key is not a header value".into())
            })?;
            v.set_sensitive(true);
            rb = rb.header(AUTHORIZATION, v);
        }
        let read = async {
            let mut res = rb.send().await.map_err(|e| {
                if e.is_timeout() {
                    CatalogueError::Timeout
                } else {
                    CatalogueError::Connect
                }
            })?;
            if !res.status().is_success() {
                return Err(CatalogueError::Status(res.status().as_u16()));
            }
            if res.content_length().unwrap_or(0) > MAX_CATALOGUE_BYTES as u64 {
                return Err(CatalogueError::TooLarge);
            }
            let mut body = Vec::new();
            while let Some(chunk) = res.chunk().await.map_err(|_| CatalogueError::Connect)? {
                if body.len() + chunk.len() > MAX_CATALOGUE_BYTES {
                    return Err(CatalogueError::TooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            Catalogue::parse(&body)
        };
        tokio::time::timeout(self.timeout, read)
            .await
            .unwrap_or(Err(CatalogueError::Timeout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = include_str!("../../loadtests/chutes-sim/fixtures/chutes/models.json");

    #[test]
    fn decimal_tao_converts_to_rao_exactly() {
        for (text, rao) in [
            ("0.00045", 450_000),
            ("0.004375", 4_375_000),
            ("0.0018", 1_800_000),
            ("0.001", 1_000_000),
            ("1", 1_000_000_000),
            ("2.5", 2_500_000_000),
            ("0.000000001", 1),
            ("4.375e-3", 4_375_000),
            ("4375E-6", 4_375_000),
            ("0.4375e-2", 4_375_000),
            ("1e+0", 1_000_000_000),
            ("0.100000000000000000000", 100_000_000),
            // f64 would read 0.1 + 0.2 style decimals inexactly; the text is exact.
            ("0.3", 300_000_000),
            ("18446744073.709551615", u64::MAX),
        ] {
            assert_eq!(tao_to_rao(text), Ok(rao), "{text}");
        }
    }

    #[test]
    fn a_fraction_of_a_rao_rounds_up() {
        assert_eq!(tao_to_rao("0.0000000001"), Ok(1));
        assert_eq!(tao_to_rao("0.0000000011"), Ok(2));
        assert_eq!(tao_to_rao("1e-60"), Ok(1));
    }

    #[test]
    fn absurd_or_foreign_amounts_are_refused() {
        for (text, problem) in [
            ("0", PriceProblem::Zero),
            ("0.0", PriceProblem::Zero),
            ("-0", PriceProblem::Zero),
            ("0e5", PriceProblem::Zero),
            ("-0.001", PriceProblem::Negative),
            ("-1e-3", PriceProblem::Negative),
            ("\"0.001\"", PriceProblem::Unparsable),
            ("true", PriceProblem::Unparsable),
            ("{}", PriceProblem::Unparsable),
            ("01", PriceProblem::Unparsable),
            ("1.", PriceProblem::Unparsable),
            (".5", PriceProblem::Unparsable),
            ("1e", PriceProblem::Unparsable),
            ("1e99999", PriceProblem::Unparsable),
            ("18446744073.709551616", PriceProblem::Unparsable),
            ("", PriceProblem::Unparsable),
        ] {
            assert_eq!(tao_to_rao(text), Err(problem), "{text:?}");
        }
    }

    #[test]
    fn rao_prints_back_as_exact_tao() {
        for rao in [
            450_000,
            4_375_000,
            1,
            1_000_000_000,
            2_500_000_000,
            u64::MAX,
        ] {
            let text = rao_to_tao_text(rao);
            assert_eq!(tao_to_rao(&text), Ok(rao), "{text}");
        }
        assert_eq!(rao_to_tao_text(450_000), "0.00045");
        assert_eq!(rao_to_tao_text(2_000_000_000), "2");
        assert_eq!(rao_to_tao_text(0), "0");
    }

    #[test]
    fn the_fixture_catalogue_reads_prices_per_model() {
        let c = Catalogue::parse(FIXTURE.as_bytes()).unwrap();
        assert_eq!(c.models.len(), 2);
        assert!(c.lists("affine-champ/Affine-Reasoner-32B"));
        assert_eq!(
            c.price("affine-champ/Affine-Reasoner-32B"),
            Ok(ProviderPrice {
                input_rao_per_mtok: 450_000,
                output_rao_per_mtok: 1_800_000,
            })
        );
        assert_eq!(
            c.price("deepseek-ai/DeepSeek-R1-0528"),
            Ok(ProviderPrice {
                input_rao_per_mtok: 1_000_000,
                output_rao_per_mtok: 4_375_000,
            })
        );
        assert_eq!(c.price("org/absent"), Err(PriceProblem::Missing));
    }

    #[test]
    fn bad_entries_keep_their_problem_and_spoil_nothing_else() {
        let body = br#"{"object":"list","data":[
            {"id":"a/none"},
            {"id":"a/null","price":null},
            {"id":"a/no-output","price":{"input":{"tao":0.001}}},
            {"id":"a/zero","price":{"input":{"tao":0},"output":{"tao":0.002}}},
            {"id":"a/neg","price":{"input":{"tao":0.001},"output":{"tao":-0.002}}},
            {"id":"a/str","price":{"input":{"tao":"0.001"},"output":{"tao":0.002}}},
            {"id":"a/shape","price":[1,2]},
            {"id":7},
            "garbage",
            {"id":"a/ok","price":{"input":{"usd":0.4,"tao":0.001},"output":{"usd":1.75,"tao":0.004375}},"extra":true}
        ]}"#;
        let c = Catalogue::parse(body).unwrap();
        assert_eq!(c.models.len(), 8);
        for (id, problem) in [
            ("a/none", PriceProblem::Missing),
            ("a/null", PriceProblem::Missing),
            ("a/no-output", PriceProblem::Missing),
            ("a/zero", PriceProblem::Zero),
            ("a/neg", PriceProblem::Negative),
            ("a/str", PriceProblem::Unparsable),
            ("a/shape", PriceProblem::Unparsable),
        ] {
            assert!(c.lists(id));
            assert_eq!(c.price(id), Err(problem), "{id}");
        }
        assert_eq!(c.price("a/ok").unwrap().output_rao_per_mtok, 4_375_000);
    }

    #[test]
    fn a_body_that_is_not_a_list_is_malformed() {
        for body in [
            &b"[]"[..],
            b"{\"data\":{}}",
            b"not json",
            b"{\"object\":\"list\"}",
            b"\xff",
        ] {
            assert!(
                matches!(Catalogue::parse(body), Err(CatalogueError::Malformed(_))),
                "{body:?}"
            );
        }
    }

    #[test]
    fn every_problem_has_its_label() {
        for p in [
            PriceProblem::Missing,
            PriceProblem::Zero,
            PriceProblem::Negative,
            PriceProblem::Unparsable,
            PriceProblem::Jump,
        ] {
            assert!(PRICE_PROBLEMS.contains(&p.as_str()));
        }
    }
}
