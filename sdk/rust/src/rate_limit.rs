//! The `RateLimit-Policy` and `RateLimit` headers (IETF httpapi draft-11 syntax), as the
//! gateway sends them on every answer of `/v1/reason` and `/v1/chat/completions`:
//!
//! ```text
//! RateLimit-Policy: "rpm";q=600;w=60, "tpm";q=2000000;w=60, "tpd";q=100000000;w=86400
//! RateLimit: "rpm";r=599;t=1, "tpm";r=1997952;t=1, "tpd";r=99997952;t=2
//! ```

use reqwest::header::HeaderMap;

/// One named limit (`rpm`, `tpm`, `tpd`, `subnet-rpm`, …) with what each header said of it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Limit {
    /// The policy's name.
    pub name: String,
    /// The quota (`q`): requests or tokens per window.
    pub quota: Option<u64>,
    /// The window in seconds (`w`).
    pub window_secs: Option<u64>,
    /// What remains (`r`).
    pub remaining: Option<u64>,
    /// Seconds until the bucket is full again (`t`).
    pub reset_secs: Option<u64>,
}

/// The caller's limits as an answer reported them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RateLimit {
    /// Every limit, in the order the policy header lists them.
    pub limits: Vec<Limit>,
}

impl RateLimit {
    /// Parses the two headers; `None` when neither is present.
    pub fn from_headers(headers: &HeaderMap) -> Option<RateLimit> {
        let policy = headers
            .get("ratelimit-policy")
            .and_then(|v| v.to_str().ok());
        let state = headers.get("ratelimit").and_then(|v| v.to_str().ok());
        if policy.is_none() && state.is_none() {
            return None;
        }
        let mut out = RateLimit::default();
        for (name, params) in policy.map(items).unwrap_or_default() {
            let limit = out.entry(name);
            limit.quota = param(&params, "q");
            limit.window_secs = param(&params, "w");
        }
        for (name, params) in state.map(items).unwrap_or_default() {
            let limit = out.entry(name);
            limit.remaining = param(&params, "r");
            limit.reset_secs = param(&params, "t");
        }
        Some(out)
    }

    /// The limit named `name` (`rpm`, `tpm`, `tpd`, `subnet-rpm`, …).
    pub fn get(&self, name: &str) -> Option<&Limit> {
        self.limits.iter().find(|l| l.name == name)
    }

    fn entry(&mut self, name: String) -> &mut Limit {
        let at = match self.limits.iter().position(|l| l.name == name) {
            Some(at) => at,
            None => {
                self.limits.push(Limit {
                    name,
                    ..Limit::default()
                });
                self.limits.len() - 1
            }
        };
        &mut self.limits[at]
    }
}

/// The list items of a structured-field header: a quoted name and its `;key=value` params.
fn items(value: &str) -> Vec<(String, Vec<(String, String)>)> {
    value
        .split(',')
        .filter_map(|item| {
            let mut parts = item.trim().split(';');
            let name = parts.next()?.trim().trim_matches('"').to_owned();
            if name.is_empty() {
                return None;
            }
            let params = parts
                .filter_map(|p| {
                    let (k, v) = p.trim().split_once('=')?;
                    Some((k.trim().to_owned(), v.trim().to_owned()))
                })
                .collect();
            Some((name, params))
        })
        .collect()
}

fn param(params: &[(String, String)], key: &str) -> Option<u64> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_parses() {
        let mut h = HeaderMap::new();
        assert_eq!(RateLimit::from_headers(&h), None);
        h.insert(
            "ratelimit-policy",
            r#""rpm";q=600;w=60, "tpm";q=2000000;w=60, "tpd";q=100000000;w=86400"#
                .parse()
                .expect("value"),
        );
        h.insert(
            "ratelimit",
            r#""rpm";r=599;t=1, "tpm";r=1997952;t=1, "tpd";r=99997952;t=2"#
                .parse()
                .expect("value"),
        );
        let rl = RateLimit::from_headers(&h).expect("present");
        assert_eq!(rl.limits.len(), 3);
        assert_eq!(
            rl.get("rpm"),
            Some(&Limit {
                name: "rpm".into(),
                quota: Some(600),
                window_secs: Some(60),
                remaining: Some(599),
                reset_secs: Some(1),
            })
        );
        assert_eq!(rl.get("tpd").and_then(|l| l.window_secs), Some(86_400));
        assert_eq!(rl.get("subnet-rpm"), None);
    }
}
