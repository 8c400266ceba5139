//! Field-level checks. Each returns what was expected, and the caller names the field.
//!
//! Values of non-secret fields are quoted in the messages (an operator fixes a typo faster
//! when they see it); URLs are quoted with any `user:password@` replaced, and secrets are
//! never quoted.

use super::secret::REDACTED;

/// The longest accepted timeout or interval: one year. Bounding them keeps every deadline
/// representable (`Instant + Duration` must not overflow) and every value printable as a
/// TOML integer.
pub(super) const MAX_SECS: u64 = 365 * 24 * 3600;

/// The largest accepted body limit. Bodies are buffered whole (signatures hash the exact
/// bytes), so the limit is a memory bound per request; 1 GiB is far beyond any real request.
pub(super) const MAX_BODY_BYTES: usize = 1 << 30;

/// Checks `lo ≤ v ≤ hi`, describing the range in the unit given.
pub(super) fn range(v: u64, lo: u64, hi: u64, unit: &str) -> Result<(), String> {
    if (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err(format!("must be between {lo} and {hi} {unit}, got {v}"))
    }
}

/// A trusted proxy: a network in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`) or a single
/// address (a /32 or /128). Host bits set under the prefix are refused: `10.0.0.1/8` is more
/// likely a typo than a wish to trust all of 10/8.
pub(super) fn cidr(s: &str) -> Result<ipnet::IpNet, String> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<std::net::IpAddr>() {
        return Ok(ipnet::IpNet::from(ip));
    }
    let net: ipnet::IpNet = s.parse().map_err(|_| {
        format!("must be an IP address or a CIDR network such as 10.0.0.0/8, got {s:?}")
    })?;
    if net.trunc() != net {
        return Err(format!(
            "has host bits set under its prefix: {s:?} (did you mean {}?)",
            net.trunc()
        ));
    }
    Ok(net)
}

/// An `http://` or `https://` base URL to which API paths are appended.
pub(super) fn http_url(url: &str) -> Result<(), String> {
    let rest = strip_scheme(url, &["http://", "https://"]).ok_or_else(|| {
        format!(
            "must be an http:// or https:// URL, got {:?}",
            redact_userinfo(url)
        )
    })?;
    no_blanks(url)?;
    if rest.contains(['?', '#']) {
        return Err(format!(
            "must be a base URL without query (?) or fragment (#), got {:?}",
            redact_userinfo(url)
        ));
    }
    host_port(authority(rest)).map_err(|why| format!("{why}, got {:?}", redact_userinfo(url)))
}

/// A `redis://` or `rediss://` URL, or a Cluster's `redis+cluster://` / `rediss+cluster://`
/// URL with one or more comma-separated nodes. `cluster` (`redis.cluster`) says a single-server
/// URL names one seed of a Cluster. The URL is a secret (it may carry a password), so the
/// messages never quote it; they name a bad node by its position.
pub(super) fn redis_url(url: &str, cluster: bool) -> Result<(), String> {
    placeholder(url)?;
    let p = super::redis_url::parse(url).ok_or_else(|| {
        "must start with redis://, rediss://, redis+cluster:// or rediss+cluster://".to_string()
    })?;
    no_blanks(url)?;
    let userinfo = p.userinfo.map(|u| format!("{u}@")).unwrap_or_default();
    for (i, host) in p.hosts.iter().enumerate() {
        host_port(&format!("{userinfo}{host}")).map_err(|why| {
            if p.cluster_scheme {
                format!("node {} of the cluster URL {why}", i + 1)
            } else {
                why
            }
        })?;
    }
    if (cluster || p.cluster_scheme) && !matches!(p.db, "" | "0") {
        return Err(
            "names a database other than 0, but Redis Cluster has only database 0".to_string(),
        );
    }
    Ok(())
}

/// A secret sent as an HTTP header value: no whitespace (a pasted newline is the classic
/// mistake, and the header would be refused at the first request instead of at start) and
/// not the placeholder `check-config` prints.
pub(super) fn header_secret(value: &str) -> Result<(), String> {
    placeholder(value)?;
    no_blanks(value)
}

/// Refuses the `<redacted>` placeholder, so a `check-config` output pasted back into a file
/// fails loudly instead of sending `<redacted>` as a credential.
pub(super) fn placeholder(value: &str) -> Result<(), String> {
    if value == REDACTED {
        Err(format!(
            "is the {REDACTED:?} placeholder printed by check-config; set the real value"
        ))
    } else {
        Ok(())
    }
}

/// An HS256 secret: not the `check-config` placeholder, and at least
/// [`super::MIN_JWT_SECRET_BYTES`] long.
pub(super) fn jwt_secret(secret: &str) -> Result<(), String> {
    placeholder(secret)?;
    if secret.len() < super::MIN_JWT_SECRET_BYTES {
        return Err(format!(
            "must be at least {} bytes (generate one with `openssl rand -hex 32`)",
            super::MIN_JWT_SECRET_BYTES
        ));
    }
    Ok(())
}

/// A settlement journal path: non-empty, and no placeholder but `{listen}` (a `{port}` or a
/// misspelt `{listn}` would otherwise become part of the file name, silently shared).
pub(super) fn journal_path(path: &str) -> Result<(), String> {
    if path.trim().is_empty() {
        return Err("expected a file path".into());
    }
    if path
        .replace(super::LISTEN_PLACEHOLDER, "")
        .contains(['{', '}'])
    {
        return Err(format!(
            "expected a file path whose only placeholder is {} (the listen address), got {path:?}",
            super::LISTEN_PLACEHOLDER
        ));
    }
    Ok(())
}

/// `org/model` or `org/model@revision`, each part of `[A-Za-z0-9._-]`, as Hugging Face ids
/// and revisions are.
pub(super) fn winner_model(spec: &str) -> Result<(), String> {
    let (id, revision) = match spec.split_once('@') {
        Some((id, rev)) => (id, Some(rev)),
        None => (spec, None),
    };
    let ok = match id.split_once('/') {
        Some((org, name)) => id_part(org) && id_part(name) && revision.is_none_or(id_part),
        None => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "expected org/model or org/model@revision (exactly one '/', non-empty parts of \
             letters, digits, '.', '_' and '-'), got {spec:?}"
        ))
    }
}

/// A fallback's name: the `upstream` label of metrics, so short and of a fixed alphabet.
pub(super) fn upstream_name(name: &str) -> Result<(), String> {
    let ok = (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'));
    if !ok {
        return Err(format!("expected 1 to 32 of [a-z0-9_-], got {name:?}"));
    }
    if name == "winner" {
        return Err("`winner` names the winner's own upstream; choose another name".into());
    }
    Ok(())
}

/// The name of an environment variable: `[A-Za-z_][A-Za-z0-9_]*`, as POSIX shells accept.
pub(super) fn env_var_name(name: &str) -> Result<(), String> {
    let mut bytes = name.bytes();
    let ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "expected an environment variable name ([A-Za-z_][A-Za-z0-9_]*), got {name:?}"
        ))
    }
}

/// A model name as a provider expects it: no blanks, at most 256 bytes.
pub(super) fn provider_model(model: &str) -> Result<(), String> {
    if model.is_empty() || model.len() > 256 {
        return Err(format!(
            "expected 1 to 256 bytes, got {} bytes",
            model.len()
        ));
    }
    no_blanks(model)
}

fn id_part(p: &str) -> bool {
    !p.is_empty()
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The prefix of every Redis key.
pub(super) fn key_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() {
        return Err("must not be empty".to_string());
    }
    if prefix.len() > 64 {
        return Err(format!("must be at most 64 bytes, got {}", prefix.len()));
    }
    if prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "must not contain whitespace or control characters, got {prefix:?}"
        ));
    }
    // Redis Cluster hashes only the first `{…}` of a key: braces in the prefix would replace
    // the per-account hash tags and put every key in one slot.
    if prefix.contains(['{', '}']) {
        return Err(format!(
            "must not contain '{{' or '}}' (they would become the Redis Cluster hash tag), \
             got {prefix:?}"
        ));
    }
    Ok(())
}

/// The gateway's own hotkey. Only the shape a later SS58 check cannot disagree with.
pub(super) fn hotkey(hotkey: &str) -> Result<(), String> {
    if hotkey.is_empty() {
        return Err("must not be empty (leave it unset to use the dev hotkey)".to_string());
    }
    if hotkey.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "must be an SS58 address without whitespace, got {hotkey:?}"
        ));
    }
    Ok(())
}

fn no_blanks(s: &str) -> Result<(), String> {
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Err("must not contain whitespace or control characters".to_string())
    } else {
        Ok(())
    }
}

/// `url` after one of `schemes` (matched case-insensitively, as URL schemes are).
fn strip_scheme<'a>(url: &'a str, schemes: &[&str]) -> Option<&'a str> {
    schemes.iter().find_map(|scheme| {
        let head = url.get(..scheme.len())?;
        head.eq_ignore_ascii_case(scheme)
            .then(|| &url[scheme.len()..])
    })
}

/// The authority (`user:pass@host:port`) of the part of a URL after `scheme://`.
fn authority(rest: &str) -> &str {
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    &rest[..end]
}

/// The host of an `http(s)://` URL, without userinfo and port; `None` if it has none.
pub(super) fn url_host(url: &str) -> Option<&str> {
    let rest = strip_scheme(url, &["http://", "https://"])?;
    let auth = authority(rest);
    let hp = auth.rsplit_once('@').map_or(auth, |(_, hp)| hp);
    if let Some(v6) = hp.strip_prefix('[') {
        return v6.split_once(']').map(|(h, _)| h);
    }
    Some(hp.split_once(':').map_or(hp, |(h, _)| h))
}

/// Checks `[userinfo@]host[:port]`: a host is required, a port must be a number.
fn host_port(auth: &str) -> Result<(), String> {
    let hp = auth.rsplit_once('@').map_or(auth, |(_, hp)| hp);
    let (host, port) = if let Some(v6) = hp.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| "has an unterminated IPv6 address".to_string())?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err("has an invalid IPv6 address".to_string());
        }
        match after {
            "" => (host, None),
            p => (
                host,
                Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| "has text after the IPv6 address".to_string())?,
                ),
            ),
        }
    } else {
        match hp.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hp, None),
        }
    };
    if host.is_empty() {
        return Err("must name a host".to_string());
    }
    // IPv6 literals were checked above; names and IPv4 addresses use this alphabet.
    if !hp.starts_with('[')
        && !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Err("has an invalid host name".to_string());
    }
    if let Some(port) = port
        && port.parse::<u16>().is_err()
    {
        return Err("has an invalid port (expected a number up to 65535)".to_string());
    }
    Ok(())
}

/// `url` with any `user:password@` replaced by `<redacted>@`, for printing.
pub(super) fn redact_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let auth = authority(rest);
    match auth.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://{REDACTED}@{host}{}", &rest[auth.len()..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_urls() {
        for ok in [
            "https://llm.chutes.ai/v1",
            "http://127.0.0.1:8000",
            "HTTP://Example.com/v1/",
            "http://[::1]:9000/v1",
            "https://user:pw@host/v1",
        ] {
            assert_eq!(http_url(ok), Ok(()), "{ok}");
        }
        for bad in [
            "ftp://x",
            "llm.chutes.ai/v1",
            "https://",
            "https:///v1",
            "https://host:port/v1",
            "https://host:70000",
            "https://host/v1?x=1",
            "https://ho st/v1",
            "http://[::1",
            "http://[zz]/",
        ] {
            assert!(http_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn url_errors_hide_credentials() {
        let err = http_url("https://user:pw-123@host/v1?x").unwrap_err();
        assert!(!err.contains("pw-123"), "{err}");
        assert!(err.contains("<redacted>@host"), "{err}");
    }

    #[test]
    fn redis_urls() {
        assert_eq!(redis_url("redis://127.0.0.1:6379/0", false), Ok(()));
        assert_eq!(redis_url("rediss://:pw@cache.internal:6380", false), Ok(()));
        assert_eq!(redis_url("redis://127.0.0.1:6379/2", false), Ok(()));
        for bad in ["http://x", "redis://", "redis+unix:///tmp/s", "<redacted>"] {
            assert!(redis_url(bad, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn cluster_urls() {
        for ok in [
            "redis+cluster://127.0.0.1:7000",
            "redis+cluster://u:p@h1:7000,h2:7001,[::1]:7002/0",
            "rediss+cluster://:pw@cache-1.internal:6380,cache-2.internal:6380",
        ] {
            assert_eq!(redis_url(ok, false), Ok(()), "{ok}");
            assert_eq!(redis_url(ok, true), Ok(()), "{ok}");
        }
        assert_eq!(redis_url("redis://10.0.0.1:7000", true), Ok(()));
        for (bad, why) in [
            ("redis+cluster://", "node 1"),
            ("redis+cluster://h1:7000,,h3:7002", "node 2"),
            ("redis+cluster://u:secret@h1:7000,h2:port", "node 2"),
            ("redis+cluster://h1:7000/1", "database"),
        ] {
            let err = redis_url(bad, false).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
            assert!(!err.contains("secret"), "{err}");
        }
        let err = redis_url("redis://h:6379/3", true).unwrap_err();
        assert!(err.contains("database"), "{err}");
    }

    #[test]
    fn hosts() {
        assert_eq!(
            url_host("https://u:p@Example.com:8443/v1"),
            Some("Example.com")
        );
        assert_eq!(url_host("http://[::1]:80"), Some("::1"));
        assert_eq!(url_host("http://localhost"), Some("localhost"));
    }

    #[test]
    fn winner_shapes() {
        for ok in [
            "org/model",
            "Qwen/Qwen3-32B",
            "a.b/c_d-e@0123abc",
            "o/m@v1.2",
        ] {
            assert_eq!(winner_model(ok), Ok(()), "{ok}");
        }
        for bad in [
            "model", "a/b/c", "/m", "o/", "o/m@", "o/m@a@b", "o/m@r/x", "o m/x",
        ] {
            assert!(winner_model(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn prefixes() {
        assert_eq!(key_prefix("agw:"), Ok(()));
        assert!(key_prefix("").is_err());
        assert!(key_prefix("a b").is_err());
        assert!(key_prefix("{agw}:").is_err());
        assert!(key_prefix(&"x".repeat(65)).is_err());
        assert_eq!(key_prefix(&"x".repeat(64)), Ok(()));
    }
}
