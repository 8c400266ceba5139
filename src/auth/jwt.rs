//! Bearer tokens: HS256 JWTs with `sub`, `scope`, `exp`, `iat`, `jti` (docs/API.md §3.3).
//!
//! Only HS256 is accepted (the algorithm is pinned, never taken from the token header), `exp`
//! is required, and a small leeway absorbs clock skew between replicas. Revocation by `jti`
//! is checked by the caller against the replicated revocation set.

use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// What a token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Call the Reasoning API as the token's account.
    Reason,
    /// Use the `/admin` API.
    Admin,
}

impl Scope {
    /// The claim spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Reason => "reason",
            Scope::Admin => "admin",
        }
    }

    /// Parses a list separated by commas and/or spaces (`reason,admin`, `reason admin`).
    pub fn parse_list(s: &str) -> Result<Vec<Scope>, String> {
        let mut out = Vec::new();
        for part in s.split([',', ' ']).filter(|p| !p.is_empty()) {
            let scope = match part {
                "reason" => Scope::Reason,
                "admin" => Scope::Admin,
                other => return Err(format!("unknown scope `{other}` (known: reason, admin)")),
            };
            if !out.contains(&scope) {
                out.push(scope);
            }
        }
        if out.is_empty() {
            return Err("at least one scope is required (reason, admin)".into());
        }
        Ok(out)
    }
}

/// The claims of our tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Account id (a hotkey's SS58 or an enterprise slug), or an operator name for admin tokens.
    pub sub: String,
    /// Space-separated scopes.
    pub scope: String,
    /// Expiry, unix seconds.
    pub exp: u64,
    /// Issue time, unix seconds.
    pub iat: u64,
    /// Unique token id, the handle for revocation.
    pub jti: String,
}

impl Claims {
    /// Whether the token carries `scope`.
    pub fn has(&self, scope: Scope) -> bool {
        self.scope.split(' ').any(|s| s == scope.as_str())
    }
}

/// Why a bearer token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Not a valid token of ours (shape, signature, algorithm, claims).
    Invalid,
    /// Past `exp` (plus leeway).
    Expired,
}

/// Keys and validation rules, built once from the configured secret.
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtKeys(<redacted>)")
    }
}

impl JwtKeys {
    /// Keys for `secret` with `leeway` for `exp`.
    pub fn new(secret: &[u8], leeway: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = leeway.as_secs();
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.validate_exp = true;
        validation.validate_aud = false;
        JwtKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// Issues a token for `sub` with `scopes`, valid for `ttl` from `now` (unix seconds).
    pub fn issue(&self, sub: &str, scopes: &[Scope], ttl: Duration, now: u64) -> (String, Claims) {
        let claims = Claims {
            sub: sub.to_string(),
            scope: scopes
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            exp: now.saturating_add(ttl.as_secs()),
            iat: now,
            jti: uuid::Uuid::new_v4().simple().to_string(),
        };
        // HS256 signing with an in-memory key cannot fail.
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .unwrap_or_default();
        (token, claims)
    }

    /// Verifies a token's signature, algorithm and expiry.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        match jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation) {
            Ok(data) => Ok(data.claims),
            Err(e) if matches!(e.kind(), ErrorKind::ExpiredSignature) => Err(TokenError::Expired),
            Err(_) => Err(TokenError::Invalid),
        }
    }
}

/// Parses `30s`, `15m`, `1h`, `7d` (a positive integer and one unit).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let err = || {
        format!("invalid duration `{s}`: use a positive number with s, m, h or d (e.g. 15m, 7d)")
    };
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?);
    let n: u64 = num.parse().map_err(|_| err())?;
    let secs = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        _ => None,
    }
    .ok_or_else(err)?;
    if secs == 0 {
        return Err(err());
    }
    Ok(Duration::from_secs(secs))
}

/// Longest lifetime `token issue` accepts.
pub const MAX_TTL: Duration = Duration::from_secs(366 * 86_400);

/// `affine-gateway token issue`: validates the arguments and signs with the configured secret.
pub fn issue_cli_token(
    config: &crate::config::Config,
    sub: &str,
    scope: &str,
    ttl: &str,
) -> Result<String, String> {
    let Some(secret) = &config.jwt_secret else {
        return Err("GATEWAY_JWT_SECRET is not set: a token signed with a random secret would be refused by every gateway".into());
    };
    let scopes = Scope::parse_list(scope)?;
    let ttl = parse_duration(ttl)?;
    if ttl > MAX_TTL {
        return Err("--ttl is longer than 366d".into());
    }
    let sub_ok = !sub.is_empty()
        && sub.len() <= 128
        && sub
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'));
    if !sub_ok {
        return Err(format!(
            "invalid --sub `{sub}`: 1 to 128 of [A-Za-z0-9._@-]"
        ));
    }
    if scopes.contains(&Scope::Reason) && crate::accounts::AccountKind::of_id(sub).is_none() {
        return Err(format!(
            "--sub `{sub}` is not an account id: an enterprise slug ([a-z0-9-], 3 to 64) or an SS58 hotkey"
        ));
    }
    let keys = JwtKeys::new(secret.expose().as_bytes(), config.auth.jwt_leeway());
    Ok(keys.issue(sub, &scopes, ttl, now_secs()).0)
}

/// Current unix time in seconds.
pub fn now_secs() -> u64 {
    crate::clock::now_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> JwtKeys {
        JwtKeys::new(&[7u8; 32], Duration::from_secs(0))
    }

    #[test]
    fn issue_and_verify_round_trip() {
        let k = keys();
        let (tok, claims) = k.issue(
            "acme",
            &[Scope::Reason, Scope::Admin],
            Duration::from_secs(60),
            now_secs(),
        );
        let got = k.verify(&tok).unwrap();
        assert_eq!(got, claims);
        assert!(got.has(Scope::Reason) && got.has(Scope::Admin));
        assert_eq!(got.scope, "reason admin");
    }

    #[test]
    fn expired_wrong_key_and_garbage_are_refused() {
        let k = keys();
        let (tok, _) = k.issue(
            "acme",
            &[Scope::Reason],
            Duration::from_secs(10),
            now_secs() - 100,
        );
        assert_eq!(k.verify(&tok), Err(TokenError::Expired));
        let (tok, _) = k.issue(
            "acme",
            &[Scope::Reason],
            Duration::from_secs(60),
            now_secs(),
        );
        let other = JwtKeys::new(&[8u8; 32], Duration::from_secs(0));
        assert_eq!(other.verify(&tok), Err(TokenError::Invalid));
        for bad in ["", "abc", "a.b.c", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."] {
            assert_eq!(k.verify(bad), Err(TokenError::Invalid), "{bad}");
        }
    }

    #[test]
    fn the_none_algorithm_and_other_algorithms_are_refused() {
        use base64ct_free::b64;
        let k = keys();
        let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
        let claims = b64(format!(
            r#"{{"sub":"x","scope":"admin","exp":{},"iat":0,"jti":"j"}}"#,
            now_secs() + 60
        )
        .as_bytes());
        assert_eq!(
            k.verify(&format!("{header}.{claims}.")),
            Err(TokenError::Invalid)
        );
        let header = b64(br#"{"alg":"HS512","typ":"JWT"}"#);
        assert_eq!(
            k.verify(&format!("{header}.{claims}.AAAA")),
            Err(TokenError::Invalid)
        );
    }

    /// Minimal base64url (no padding) for building hostile tokens in tests.
    mod base64ct_free {
        pub fn b64(input: &[u8]) -> String {
            const T: &[u8; 64] =
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let mut out = String::new();
            for chunk in input.chunks(3) {
                let b = [
                    chunk[0],
                    *chunk.get(1).unwrap_or(&0),
                    *chunk.get(2).unwrap_or(&0),
                ];
                let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
                for i in 0..=chunk.len() {
                    out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
                }
            }
            out
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(604_800));
        for bad in [
            "",
            "0s",
            "10",
            "m",
            "1x",
            "-1h",
            "1.5h",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn scopes() {
        assert_eq!(
            Scope::parse_list("reason,admin").unwrap(),
            [Scope::Reason, Scope::Admin]
        );
        assert_eq!(
            Scope::parse_list("reason admin reason").unwrap(),
            [Scope::Reason, Scope::Admin]
        );
        assert!(Scope::parse_list("root").is_err());
        assert!(Scope::parse_list("").is_err());
    }
}
