//! Redis URLs: one server (`redis://`, `rediss://`) or the seed nodes of a Redis Cluster
//! (`redis+cluster://[user:password@]host1:port1,host2:port2`, `rediss+cluster://…` for TLS).
//!
//! The redis crate's cluster client wants one URL per seed node, each with its credentials;
//! operators want to write the credentials once. So a cluster URL carries the userinfo once,
//! before the comma-separated nodes, and [`seeds`] hands out one ordinary URL per node with
//! that userinfo and the URL's tail (`/0`, `?…`, `#…`). Validation (in `validate.rs`) and the
//! store both go through [`parse`], so they never disagree on what a URL means.

/// The cluster schemes and the scheme each of their nodes is spoken to with.
const CLUSTER_SCHEMES: [(&str, &str); 2] = [
    ("redis+cluster://", "redis://"),
    ("rediss+cluster://", "rediss://"),
];

/// The single-server schemes.
const SINGLE_SCHEMES: [&str; 2] = ["redis://", "rediss://"];

/// A Redis URL taken apart. Borrowed from the URL, which is a secret: never print it.
pub(super) struct Parsed<'a> {
    /// The scheme each node is spoken to with: `redis://` or `rediss://` (as written).
    pub(super) node_scheme: &'a str,
    /// True for `redis+cluster://` and `rediss+cluster://`.
    pub(super) cluster_scheme: bool,
    /// `user:password` (without the `@`), if present.
    pub(super) userinfo: Option<&'a str>,
    /// The `host[:port]` of each node: one for a single-server URL, one or more for a
    /// cluster URL.
    pub(super) hosts: Vec<&'a str>,
    /// The database path segment (`0` in `/0`), empty when absent.
    pub(super) db: &'a str,
    /// Everything after the authority (`/0?protocol=resp3#insecure`), passed on to each node.
    pub(super) tail: &'a str,
}

/// Takes `url` apart; `None` when its scheme is none of the four accepted.
pub(super) fn parse(url: &str) -> Option<Parsed<'_>> {
    let lower = |n: usize| url.get(..n).map(str::to_ascii_lowercase);
    let (node_scheme, cluster_scheme, rest) = CLUSTER_SCHEMES
        .iter()
        .find_map(|(cluster, node)| {
            (lower(cluster.len())? == *cluster).then(|| (*node, true, &url[cluster.len()..]))
        })
        .or_else(|| {
            SINGLE_SCHEMES.iter().find_map(|s| {
                (lower(s.len())? == *s).then(|| (&url[..s.len()], false, &url[s.len()..]))
            })
        })?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    // Node addresses never contain `@`, so the last one ends the userinfo even when a
    // password contains a comma.
    let (userinfo, nodes) = match authority.rsplit_once('@') {
        Some((u, n)) => (Some(u), n),
        None => (None, authority),
    };
    let hosts = if cluster_scheme {
        nodes.split(',').collect()
    } else {
        vec![nodes]
    };
    let db = tail
        .strip_prefix('/')
        .map_or("", |p| p.split(['?', '#']).next().unwrap_or_default());
    Some(Parsed {
        node_scheme,
        cluster_scheme,
        userinfo,
        hosts,
        db,
        tail,
    })
}

/// True when `url` names a Redis Cluster by its scheme (`redis+cluster://`,
/// `rediss+cluster://`).
pub fn is_cluster_url(url: &str) -> bool {
    parse(url).is_some_and(|p| p.cluster_scheme)
}

/// One ordinary `redis://`/`rediss://` URL per node of `url`, each with the URL's userinfo
/// and tail. A single-server URL is its own one seed, unchanged; a URL of an unknown scheme
/// too (the redis crate then explains what is wrong with it). The results carry the password:
/// they are as secret as `url`.
pub fn seeds(url: &str) -> Vec<String> {
    let Some(p) = parse(url).filter(|p| p.cluster_scheme) else {
        return vec![url.to_owned()];
    };
    p.hosts
        .iter()
        .map(|host| match p.userinfo {
            Some(u) => format!("{}{u}@{host}{}", p.node_scheme, p.tail),
            None => format!("{}{host}{}", p.node_scheme, p.tail),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_split_into_one_seed_per_node() {
        assert_eq!(
            seeds("redis+cluster://user:p,w@h1:7000,h2:7001/0?protocol=resp3"),
            vec![
                "redis://user:p,w@h1:7000/0?protocol=resp3",
                "redis://user:p,w@h2:7001/0?protocol=resp3",
            ]
        );
        assert_eq!(
            seeds("REDISS+cluster://[::1]:7000,cache:7001#insecure"),
            vec![
                "rediss://[::1]:7000#insecure",
                "rediss://cache:7001#insecure"
            ]
        );
        assert!(is_cluster_url("rediss+cluster://h:1"));
    }

    #[test]
    fn single_urls_are_their_own_seed() {
        for url in ["redis://:pw@h:6379/2", "rediss://h", "tcp://x"] {
            assert_eq!(seeds(url), vec![url.to_owned()]);
            assert!(!is_cluster_url(url));
        }
        let p = parse("redis://h1,h2:7000/3").expect("parses");
        assert_eq!(p.hosts, vec!["h1,h2:7000"], "a comma means nothing here");
        assert_eq!(p.db, "3");
    }
}
