//! Who the client is, when a load balancer stands in between.
//!
//! Behind a proxy every client shares the proxy's TCP address, so a per-IP limit on the peer
//! would throttle everyone together. The proxy says who the client was in `X-Forwarded-For`
//! (or RFC 7239 `Forwarded`), but anyone can send those headers: they are believed only
//! from the configured trusted proxies, and only as far as the chain of trusted hops goes.
//!
//! The rule is "rightmost untrusted": each proxy appends the address it received the request
//! from, so the list is read from the right, skipping trusted proxies; the first address that
//! is not one of them is the client. Entries further left were written by that client (or
//! anyone before it) and prove nothing.

use std::net::IpAddr;

use axum::http::HeaderMap;
use axum::http::header::FORWARDED;
use ipnet::IpNet;

/// The `X-Forwarded-For` header.
const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// The configured trusted proxies.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Trusts exactly `nets`.
    pub fn new(nets: Vec<IpNet>) -> Self {
        TrustedProxies(nets)
    }

    /// Whether `ip` is one of the trusted proxies (an IPv4-mapped IPv6 address counts as
    /// its IPv4 address, as dual-stack sockets report them).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client's address for a request that came from TCP peer `peer` with `headers`.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.contains(peer) {
            return peer;
        }
        // Hops as proxies appended them, nearest last; X-Forwarded-For is the de-facto
        // standard, `Forwarded` is read when it is absent.
        let mut hops: Vec<Option<IpAddr>> = headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .flat_map(|v| v.to_str().unwrap_or("").split(','))
            .map(|s| parse_node(s.trim()))
            .collect();
        if hops.is_empty() {
            hops = headers
                .get_all(FORWARDED)
                .iter()
                .flat_map(|v| v.to_str().unwrap_or("").split(','))
                .filter_map(forwarded_for)
                .collect();
        }
        let mut client = peer;
        for hop in hops.into_iter().rev() {
            // A hop that is no address (garbage, `unknown`, an obfuscated name) cannot be
            // walked past: the last trusted hop is the best we know.
            let Some(ip) = hop else { break };
            client = ip;
            if !self.contains(ip) {
                break;
            }
        }
        client
    }
}

/// The `for=` node of one `Forwarded` element: `Some(None)` when it is not an address.
fn forwarded_for(element: &str) -> Option<Option<IpAddr>> {
    element.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("for")
            .then(|| parse_node(v.trim().trim_matches('"')))
    })
}

/// An address as proxies write it: bare, `[v6]`, `[v6]:port` or `v4:port`.
fn parse_node(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (v6, _) = rest.split_once(']')?;
        return v6.parse::<IpAddr>().ok().map(|ip| ip.to_canonical());
    }
    let (v4, port) = s.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    v4.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn trusted(nets: &[&str]) -> TrustedProxies {
        TrustedProxies::new(nets.iter().map(|n| n.parse().unwrap()).collect())
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_says() {
        let t = trusted(&["10.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "1.2.3.4"), ("forwarded", "for=5.6.7.8")]);
        assert_eq!(t.client_ip(ip("203.0.113.9"), &h), ip("203.0.113.9"));
        assert_eq!(
            TrustedProxies::default().client_ip(ip("10.0.0.1"), &h),
            ip("10.0.0.1"),
            "no trusted proxies: the headers mean nothing"
        );
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let t = trusted(&["10.0.0.0/8", "192.168.1.1/32"]);
        // The client forged the leftmost entry; the LB chain appended the rest.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 192.168.1.1")]);
        assert_eq!(t.client_ip(ip("10.1.2.3"), &h), ip("198.51.100.7"));
        // Several header lines are one list, in order.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "198.51.100.7, 10.9.9.9"),
        ]);
        assert_eq!(t.client_ip(ip("10.1.2.3"), &h), ip("198.51.100.7"));
    }

    #[test]
    fn all_trusted_means_the_leftmost_and_garbage_stops_the_walk() {
        let t = trusted(&["10.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "10.0.0.5, 10.0.0.6")]);
        assert_eq!(t.client_ip(ip("10.0.0.7"), &h), ip("10.0.0.5"));
        let h = headers(&[("x-forwarded-for", "1.1.1.1, not-an-ip, 10.0.0.6")]);
        assert_eq!(t.client_ip(ip("10.0.0.7"), &h), ip("10.0.0.6"));
        let h = headers(&[]);
        assert_eq!(t.client_ip(ip("10.0.0.7"), &h), ip("10.0.0.7"));
    }

    #[test]
    fn forwarded_is_read_when_x_forwarded_for_is_absent() {
        let t = trusted(&["10.0.0.0/8"]);
        let h = headers(&[(
            "forwarded",
            r#"for=6.6.6.6, for="[2001:db8::1]:4711";proto=https, for=10.0.0.2"#,
        )]);
        assert_eq!(t.client_ip(ip("10.0.0.1"), &h), ip("2001:db8::1"));
        let h = headers(&[("forwarded", "for=198.51.100.1:8080;by=10.0.0.1")]);
        assert_eq!(t.client_ip(ip("10.0.0.1"), &h), ip("198.51.100.1"));
    }

    #[test]
    fn mapped_addresses_are_their_ipv4_address() {
        let t = trusted(&["10.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "::ffff:198.51.100.7")]);
        assert_eq!(t.client_ip(ip("::ffff:10.0.0.1"), &h), ip("198.51.100.7"));
    }
}
