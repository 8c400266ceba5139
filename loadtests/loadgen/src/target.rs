//! The one endpoint a run talks to, and the request it sends there every time.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use hyper::{HeaderMap, Method, Request, Uri};

use crate::sign::Signer;

/// Where requests go and what they carry; built once, cloned per request.
#[derive(Clone, Debug)]
pub struct Target {
    /// The resolved address; the only one a run ever connects to.
    pub addr: SocketAddr,
    method: Method,
    path: Uri,
    headers: HeaderMap,
    body: Bytes,
}

impl Target {
    /// Checks the URL and headers and resolves the host once, up front, so a run never looks a
    /// name up again (and cannot drift to another address mid-run).
    pub async fn new(
        url: &str,
        method: Option<&str>,
        headers: &[(String, String)],
        body: Bytes,
    ) -> Result<Self, String> {
        let uri: Uri = url.parse().map_err(|e| format!("bad --url `{url}`: {e}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => {
                return Err(format!("--url scheme `{other}` is not supported; use http"));
            }
            None => return Err(format!("--url `{url}` needs http://host:port")),
        }
        let authority = uri
            .authority()
            .ok_or_else(|| format!("--url `{url}` has no host"))?
            .clone();
        let port = authority.port_u16().unwrap_or(80);
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let addr = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("cannot resolve `{host}`: {e}"))?
            .next()
            .ok_or_else(|| format!("`{host}` resolves to no address"))?;
        let path: Uri = uri
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .parse()
            .map_err(|e| format!("bad path in `{url}`: {e}"))?;

        let method = match method {
            Some(m) => Method::from_bytes(m.trim().to_ascii_uppercase().as_bytes())
                .map_err(|e| format!("bad --method `{m}`: {e}"))?,
            None if body.is_empty() => Method::GET,
            None => Method::POST,
        };

        let mut map = HeaderMap::new();
        let host_value = HeaderValue::from_str(authority.as_str())
            .map_err(|e| format!("bad host `{authority}`: {e}"))?;
        map.insert(HOST, host_value);
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| format!("bad header name `{name}`: {e}"))?;
            let value = HeaderValue::from_str(value)
                .map_err(|e| format!("bad value for header `{name}`: {e}"))?;
            map.append(name, value);
        }
        if !body.is_empty() && !map.contains_key(CONTENT_TYPE) {
            map.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }

        Ok(Self {
            addr,
            method,
            path,
            headers: map,
            body,
        })
    }

    /// The method requests use.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// A fresh copy of the request; the body is reference-counted, so this does not copy it.
    pub fn request(&self) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(self.body.clone()));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.path.clone();
        *request.headers_mut() = self.headers.clone();
        request
    }

    /// [`Target::request`] with btauth/1 headers signed for it just now.
    pub fn signed_request(&self, signer: &Signer) -> Request<Full<Bytes>> {
        let mut request = self.request();
        let path = self.path.path_and_query().map_or("/", |pq| pq.as_str());
        for (name, value) in signer.headers(self.method.as_str(), path, &self.body) {
            request.headers_mut().insert(name, value);
        }
        request
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn builds_origin_form_requests_for_the_given_url() {
        let t = Target::new(
            "http://127.0.0.1:9/v1/reason?x=1",
            None,
            &[("X-Test".to_owned(), "yes".to_owned())],
            Bytes::from_static(b"{}"),
        )
        .await
        .expect("valid target");
        assert_eq!(t.addr, "127.0.0.1:9".parse().expect("addr"));
        let r = t.request();
        assert_eq!(r.method(), Method::POST, "a body implies POST");
        assert_eq!(r.uri(), "/v1/reason?x=1");
        assert_eq!(r.headers()[HOST], "127.0.0.1:9");
        assert_eq!(r.headers()["x-test"], "yes");
        assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
    }

    #[tokio::test]
    async fn explicit_method_and_content_type_win() {
        let t = Target::new(
            "http://127.0.0.1:9",
            Some("put"),
            &[("content-type".to_owned(), "text/plain".to_owned())],
            Bytes::from_static(b"hi"),
        )
        .await
        .expect("valid target");
        let r = t.request();
        assert_eq!(r.method(), Method::PUT);
        assert_eq!(r.uri(), "/");
        assert_eq!(r.headers()[CONTENT_TYPE], "text/plain");
        let get = Target::new("http://127.0.0.1:9/x", None, &[], Bytes::new()).await;
        assert_eq!(get.expect("valid").request().method(), Method::GET);
    }

    #[tokio::test]
    async fn signed_requests_carry_fresh_btauth_headers() {
        let t = Target::new(
            "http://127.0.0.1:9/v1/reason?x=1",
            None,
            &[],
            Bytes::from_static(b"{}"),
        )
        .await
        .expect("valid target");
        let signer = Signer::new("//Alice", crate::sign::DEV_RECEIVER).expect("signer");
        let a = t.signed_request(&signer);
        let b = t.signed_request(&signer);
        assert_eq!(a.headers()["x-bittensor-hotkey"], signer.sender());
        assert_ne!(
            a.headers()["x-bittensor-nonce"],
            b.headers()["x-bittensor-nonce"]
        );
        assert_eq!(a.headers()[CONTENT_TYPE], "application/json");
        assert!(t.request().headers().get("x-bittensor-signature").is_none());
    }

    #[tokio::test]
    async fn rejects_what_it_cannot_send() {
        for url in [
            "https://127.0.0.1/",
            "127.0.0.1:80/x",
            "http:///x",
            "not a url",
        ] {
            assert!(
                Target::new(url, None, &[], Bytes::new()).await.is_err(),
                "{url}"
            );
        }
        let bad_header = [("bad header".to_owned(), "v".to_owned())];
        assert!(
            Target::new("http://127.0.0.1:9/", None, &bad_header, Bytes::new())
                .await
                .is_err()
        );
    }
}
