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

/// One HS256 secret with its key id.
struct Key {
    /// [`key_id`] of the secret: written in the `kid` header of the tokens it signs.
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl Key {
    fn new(secret: &[u8]) -> Key {
        Key {
            kid: key_id(secret),
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        }
    }
}

/// The key id of an HS256 secret: the first 8 bytes of SHA-256 over a fixed label and the
/// secret, in lowercase hex (16 characters).
///
/// Derived rather than configured, so every replica given the same secret names it the same
/// without a second setting that could disagree with it. It is public (every token carries
/// it): the label keeps it from being a plain hash of the secret, and a 32-byte secret cannot
/// be recovered from 64 bits of its hash.
pub fn key_id(secret: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"affine-gateway jwt kid v1\0");
    h.update(secret);
    hex::encode(&h.finalize()[..8])
}

/// Keys and validation rules, built once from the configured secrets.
///
/// Tokens are signed with the current secret and carry its key id (`kid`). During a
/// rotation a second secret is accepted too (`GATEWAY_JWT_SECRET_PREVIOUS`): a token whose
/// `kid` names one of the two is checked against that one only; a token without `kid`
/// (issued before key ids existed) is tried against both; any other `kid` is refused. Each
/// check compares the MAC in constant time (the `hmac` crate's `verify_slice`).
pub struct JwtKeys {
    /// Signs, and is tried first.
    current: Key,
    /// Accepted, never used to sign.
    previous: Option<Key>,
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
            current: Key::new(secret),
            previous: None,
            validation,
        }
    }

    /// These keys, also accepting tokens signed with `previous` (a rotation under way).
    pub fn accepting(mut self, previous: &[u8]) -> Self {
        self.previous = Some(Key::new(previous));
        self
    }

    /// The key id new tokens carry.
    pub fn current_kid(&self) -> &str {
        &self.current.kid
    }

    /// The key id of the previous secret, while one is accepted.
    pub fn previous_kid(&self) -> Option<&str> {
        self.previous.as_ref().map(|k| k.kid.as_str())
    }

    /// Issues a token for `sub` with `scopes`, valid for `ttl` from `now` (unix seconds),
    /// signed with the current secret.
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
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.current.kid.clone());
        // HS256 signing with an in-memory key cannot fail.
        let token =
            jsonwebtoken::encode(&header, &claims, &self.current.encoding).unwrap_or_default();
        (token, claims)
    }

    /// Verifies a token's signature (with the key its `kid` names, or each accepted key when
    /// it names none), algorithm and expiry.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let kid = jsonwebtoken::decode_header(token)
            .map_err(|_| TokenError::Invalid)?
            .kid;
        let keys = std::iter::once(&self.current).chain(self.previous.as_ref());
        for key in keys.filter(|k| kid.as_ref().is_none_or(|kid| *kid == k.kid)) {
            match jsonwebtoken::decode::<Claims>(token, &key.decoding, &self.validation) {
                Ok(data) => return Ok(data.claims),
                // The signature checked out (it is verified before the claims).
                Err(e) if matches!(e.kind(), ErrorKind::ExpiredSignature) => {
                    return Err(TokenError::Expired);
                }
                Err(_) => {}
            }
        }
        Err(TokenError::Invalid)
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
    fn tokens_carry_the_key_id_of_the_signing_secret() {
        let k = keys();
        let (tok, _) = k.issue(
            "acme",
            &[Scope::Reason],
            Duration::from_secs(60),
            now_secs(),
        );
        let header = jsonwebtoken::decode_header(&tok).unwrap();
        assert_eq!(header.kid.as_deref(), Some(key_id(&[7u8; 32]).as_str()));
        assert_eq!(k.current_kid(), key_id(&[7u8; 32]));
        assert_eq!(k.current_kid().len(), 16);
        assert_eq!(k.previous_kid(), None);
        assert_ne!(key_id(&[7u8; 32]), key_id(&[8u8; 32]));
        // Not a bare hash of the secret.
        use sha2::{Digest, Sha256};
        assert!(!hex::encode(Sha256::digest([7u8; 32])).starts_with(&key_id(&[7u8; 32])));
    }

    // issue #16: old and new secret both verify during a rotation, only the new after it.
    #[test]
    fn a_rotation_accepts_both_secrets_then_only_the_new_one() {
        let (old, new) = ([1u8; 40], [2u8; 40]);
        let now = now_secs();
        let ttl = Duration::from_secs(600);
        let before = JwtKeys::new(&old, Duration::ZERO);
        let during = JwtKeys::new(&new, Duration::ZERO).accepting(&old);
        let after = JwtKeys::new(&new, Duration::ZERO);
        assert_eq!(during.current_kid(), after.current_kid());
        assert_eq!(during.previous_kid(), Some(before.current_kid()));

        for scopes in [&[Scope::Reason][..], &[Scope::Admin][..]] {
            let (old_tok, old_claims) = before.issue("acme", scopes, ttl, now);
            // Issued before key ids existed: no `kid` header, signed with the old secret.
            let legacy = jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &old_claims,
                &EncodingKey::from_secret(&old),
            )
            .unwrap();
            assert!(jsonwebtoken::decode_header(&legacy).unwrap().kid.is_none());
            let (new_tok, new_claims) = during.issue("acme", scopes, ttl, now);
            assert_eq!(
                jsonwebtoken::decode_header(&new_tok)
                    .unwrap()
                    .kid
                    .as_deref(),
                Some(after.current_kid())
            );

            assert_eq!(during.verify(&old_tok), Ok(old_claims.clone()));
            assert_eq!(during.verify(&legacy), Ok(old_claims.clone()));
            assert_eq!(during.verify(&new_tok), Ok(new_claims.clone()));
            assert_eq!(before.verify(&new_tok), Err(TokenError::Invalid));

            assert_eq!(after.verify(&new_tok), Ok(new_claims));
            assert_eq!(after.verify(&old_tok), Err(TokenError::Invalid));
            assert_eq!(after.verify(&legacy), Err(TokenError::Invalid));
        }

        // An old token that expired is still reported as expired during the rotation.
        let (expired, _) =
            before.issue("acme", &[Scope::Reason], Duration::from_secs(10), now - 100);
        assert_eq!(during.verify(&expired), Err(TokenError::Expired));
    }

    #[test]
    fn a_key_id_selects_the_key_and_an_unknown_one_is_refused() {
        let (old, new) = ([1u8; 40], [2u8; 40]);
        let during = JwtKeys::new(&new, Duration::ZERO).accepting(&old);
        let claims = Claims {
            sub: "ops".into(),
            scope: "admin".into(),
            exp: now_secs() + 60,
            iat: now_secs(),
            jti: "j".into(),
        };
        let signed_with_old = |kid: Option<String>| {
            let mut header = Header::new(Algorithm::HS256);
            header.kid = kid;
            jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&old)).unwrap()
        };
        assert_eq!(during.verify(&signed_with_old(None)), Ok(claims.clone()));
        assert_eq!(
            during.verify(&signed_with_old(Some(key_id(&old)))),
            Ok(claims.clone())
        );
        // A valid signature by the old secret under the new key id is checked against the
        // new key only, and an unknown key id against none.
        assert_eq!(
            during.verify(&signed_with_old(Some(key_id(&new)))),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            during.verify(&signed_with_old(Some("0000000000000000".into()))),
            Err(TokenError::Invalid)
        );
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
