//! Coldkeys linked to accounts: which account a TAO transfer from a coldkey pays for.
//!
//! A caller links a coldkey by having it sign (sr25519) the UTF-8 text of [`link_message`],
//! which names the caller's account, this gateway's hotkey and a nonce, raw or wrapped in
//! `<Bytes>…</Bytes>` as polkadot.js wallets sign. Naming the account means a signature made
//! for one account cannot link the coldkey to another; naming the gateway means a signature
//! collected by another service cannot be replayed here; the nonce is single-use per coldkey
//! and remembered durably, so a captured signature cannot relink the coldkey after an
//! operator unlinked it.
//!
//! ## Store layout (keys in [`crate::store::keys`])
//! - `{c:<ss58>}:link` is the claim, the authority: the [`ColdkeyLink`] as JSON, written with
//!   `SET NX`, so of two concurrent links to different accounts exactly one wins, and released
//!   only by compare-and-delete, so an unlink never removes a claim made since it read it.
//!   [`account_of`] (the deposit poller's question) reads only this key.
//! - `{c:<ss58>}:nonces` the nonces the coldkey has used, under the same tag as the claim.
//! - `{a:<id>}:coldkeys` the account's index of its coldkeys. It lives on another hash slot
//!   than the claim, so it is written after the claim and read through it: an index entry
//!   whose claim names another account (or none) is ignored, and a re-link of a coldkey the
//!   account already holds writes the entry again, repairing an index a crash left behind.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

// The signed message and its check are shared with the SDK (`affine-reason-auth`).
pub(crate) use affine_reason_auth::coldkey::{link_message, valid_nonce};
use affine_reason_auth::coldkey::{parse_link_signature, verify_link};

use crate::auth::ss58::{self, Ss58Error};
use crate::store::{Store, StoreError, keys};

/// A coldkey linked to an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub(crate) struct ColdkeyLink {
    /// The coldkey's SS58 address (prefix 42, canonical spelling).
    #[schema(example = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY")]
    pub coldkey: String,
    /// The account the coldkey's transfers credit.
    #[schema(example = "acme-labs")]
    pub account: String,
    /// When the link was made (RFC 3339, UTC, milliseconds).
    #[schema(example = "2026-11-25T10:00:00.000Z")]
    pub linked_at: String,
}

/// Why a link request was refused. Each maps to 400 `invalid_request` with [`Self::detail`],
/// which names the problem and never echoes the signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LinkRefusal {
    /// The coldkey is not an SS58 address (or not prefix 42, or not canonical).
    Coldkey(Ss58Error),
    /// The nonce is not 1 to 64 of `[A-Za-z0-9._:-]`.
    Nonce,
    /// The signature is not `0x` and 128 hex digits.
    SignatureShape,
    /// The signature does not verify over the link message, raw or `<Bytes>`-wrapped.
    BadSignature,
    /// The coldkey already used this nonce.
    NonceUsed,
    /// The coldkey is linked to another account.
    LinkedElsewhere,
}

impl LinkRefusal {
    /// The detail of the 400 answer.
    pub(crate) fn detail(self) -> String {
        match self {
            LinkRefusal::Coldkey(e) => format!("`coldkey` is not a usable SS58 address: {e}"),
            LinkRefusal::Nonce => "`nonce` must be 1 to 64 of [A-Za-z0-9._:-]".to_owned(),
            LinkRefusal::SignatureShape => {
                "`signature` must be 0x followed by 128 hex digits (64 bytes, sr25519)".to_owned()
            }
            LinkRefusal::BadSignature => "`signature` does not verify: the coldkey must sign \
                 affine-gateway:link-coldkey:<your account id>:<this gateway's hotkey>:<nonce> \
                 (raw or <Bytes>-wrapped)"
                .to_owned(),
            LinkRefusal::NonceUsed => {
                "this coldkey already used that `nonce`; sign again with a new one".to_owned()
            }
            LinkRefusal::LinkedElsewhere => "this coldkey is linked to another account; \
                 an operator must unlink it first"
                .to_owned(),
        }
    }
}

/// Why linking failed: refused, or the store failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LinkError {
    /// The request is refused (400).
    #[error("link refused: {0:?}")]
    Refused(LinkRefusal),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<LinkRefusal> for LinkError {
    fn from(r: LinkRefusal) -> LinkError {
        LinkError::Refused(r)
    }
}

/// What [`link`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Linked {
    /// The coldkey was not linked; now it is linked to the account.
    Created(ColdkeyLink),
    /// The coldkey was already linked to the same account (the link as first made).
    Existing(ColdkeyLink),
}

/// Checks a link request's shape and signature; returns the coldkey's public key.
///
/// Pure CPU work: run before anything touches the store, so an unsigned request cannot burn
/// a coldkey's nonces.
pub(crate) fn verify(
    account_id: &str,
    gateway_hotkey: &str,
    coldkey: &str,
    nonce: &str,
    signature: &str,
) -> Result<[u8; 32], LinkRefusal> {
    let public = ss58::decode42(coldkey).map_err(LinkRefusal::Coldkey)?;
    if !valid_nonce(nonce) {
        return Err(LinkRefusal::Nonce);
    }
    let sig = parse_link_signature(signature).ok_or(LinkRefusal::SignatureShape)?;
    let message = link_message(account_id, gateway_hotkey, nonce);
    if !verify_link(&public, &message, &sig) {
        return Err(LinkRefusal::BadSignature);
    }
    Ok(public)
}

fn corrupt() -> StoreError {
    StoreError::Protocol("a coldkey link record is corrupt".to_owned())
}

/// The claim of `coldkey` (SS58) with its raw bytes (for compare-and-delete), if any.
async fn claim_of(
    store: &Store,
    coldkey: &str,
) -> Result<Option<(ColdkeyLink, Vec<u8>)>, StoreError> {
    match store.get(&keys::coldkey_link(coldkey)).await? {
        Some(raw) => {
            let link: ColdkeyLink = serde_json::from_slice(&raw).map_err(|_| corrupt())?;
            Ok(Some((link, raw)))
        }
        None => Ok(None),
    }
}

/// Links a verified `coldkey` (SS58, see [`verify`]) to `account`, consuming `nonce`.
///
/// The nonce is recorded first, so it is spent whatever follows (a refusal or a store
/// failure included): a signature is good for one attempt. A coldkey linked to another
/// account is refused; linked to this one, the existing link is returned.
pub(crate) async fn link(
    store: &Store,
    account: &str,
    coldkey: &str,
    nonce: &str,
) -> Result<Linked, LinkError> {
    if !store.sadd(&keys::coldkey_nonces(coldkey), nonce).await? {
        return Err(LinkRefusal::NonceUsed.into());
    }
    let (linked_at, _) = crate::store::rfc3339_and_day(crate::clock::now_ms());
    let fresh = ColdkeyLink {
        coldkey: coldkey.to_owned(),
        account: account.to_owned(),
        linked_at,
    };
    let bytes = serde_json::to_vec(&fresh).map_err(|_| corrupt())?;
    let claim = keys::coldkey_link(coldkey);
    // Two rounds at most: a claim seen here can vanish (an unlink) before it is read back.
    for _ in 0..2 {
        if store.set_nx(&claim, &bytes).await? {
            store
                .sadd(&keys::account_coldkeys(account), coldkey)
                .await?;
            return Ok(Linked::Created(fresh));
        }
        match claim_of(store, coldkey).await? {
            Some((held, _)) if held.account == account => {
                store
                    .sadd(&keys::account_coldkeys(account), coldkey)
                    .await?;
                return Ok(Linked::Existing(held));
            }
            Some(_) => return Err(LinkRefusal::LinkedElsewhere.into()),
            None => continue,
        }
    }
    Err(StoreError::Protocol("the coldkey link kept changing while it was made".to_owned()).into())
}

/// Unlinks `coldkey` (SS58) from `account`; `false` when it was not linked to that account.
/// Its used nonces stay used.
pub(crate) async fn unlink(
    store: &Store,
    account: &str,
    coldkey: &str,
) -> Result<bool, StoreError> {
    let removed = match claim_of(store, coldkey).await? {
        Some((held, raw)) if held.account == account => {
            store.del_if_eq(&keys::coldkey_link(coldkey), &raw).await?
        }
        _ => false,
    };
    // Also drops an index entry whose claim is gone or names another account.
    store
        .srem(&keys::account_coldkeys(account), coldkey)
        .await?;
    Ok(removed)
}

/// The coldkeys linked to `account`, sorted by address.
pub(crate) async fn links_of(store: &Store, account: &str) -> Result<Vec<ColdkeyLink>, StoreError> {
    let mut out = Vec::new();
    for coldkey in store.smembers(&keys::account_coldkeys(account)).await? {
        if let Some((link, _)) = claim_of(store, &coldkey).await?
            && link.account == account
        {
            out.push(link);
        }
    }
    Ok(out)
}

/// The account the coldkey with public key `coldkey` is linked to, if any: whom a transfer
/// from it credits.
pub(crate) async fn account_of(
    store: &Store,
    coldkey: &[u8; 32],
) -> Result<Option<String>, StoreError> {
    Ok(claim_of(store, &ss58::encode42(coldkey))
        .await?
        .map(|(link, _)| link.account))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sp_core::{Pair, sr25519};

    const GATEWAY: &str = crate::config::DEV_HOTKEY;

    #[derive(Deserialize)]
    struct Vectors {
        gateway_hotkey: String,
        message_format: String,
        cases: Vec<Case>,
    }

    #[derive(Deserialize)]
    struct Case {
        name: String,
        account: String,
        coldkey: String,
        nonce: String,
        signature: String,
        signed_message: String,
        expect: String,
    }

    fn vectors() -> Vectors {
        serde_json::from_str(include_str!("../../tests/vectors/coldkey_link.json"))
            .expect("vectors parse")
    }

    #[test]
    fn the_message_has_the_documented_shape() {
        assert_eq!(
            link_message("acme", GATEWAY, "n-1"),
            format!("affine-gateway:link-coldkey:acme:{GATEWAY}:n-1")
        );
        let v = vectors();
        assert_eq!(
            link_message("<account id>", "<gateway hotkey ss58>", "<nonce>"),
            v.message_format
        );
    }

    #[test]
    fn every_sdk_vector_gets_its_verdict() {
        let v = vectors();
        assert_eq!(v.gateway_hotkey, GATEWAY);
        assert!(v.cases.iter().filter(|c| c.expect == "ok").count() >= 2);
        assert!(
            v.cases
                .iter()
                .any(|c| c.signed_message.starts_with("<Bytes>"))
        );
        for c in &v.cases {
            let got = verify(&c.account, GATEWAY, &c.coldkey, &c.nonce, &c.signature);
            match c.expect.as_str() {
                "ok" => {
                    let key = got.unwrap_or_else(|e| panic!("{}: {e:?}", c.name));
                    assert_eq!(ss58::encode42(&key), c.coldkey, "{}", c.name);
                }
                "bad_signature" => {
                    assert_eq!(got, Err(LinkRefusal::BadSignature), "{}", c.name);
                }
                other => panic!("{}: unknown expectation {other}", c.name),
            }
        }
    }

    fn signed(uri: &str, account: &str, nonce: &str) -> (String, String) {
        let pair = sr25519::Pair::from_string(uri, None).expect("dev uri");
        let sig = pair.sign(link_message(account, GATEWAY, nonce).as_bytes());
        (
            ss58::encode42(&pair.public().0),
            format!("0x{}", hex::encode(sig.0)),
        )
    }

    #[test]
    fn malformed_fields_are_refused_before_the_signature() {
        let (ck, sig) = signed("//Charlie", "acme", "n1");
        assert!(verify("acme", GATEWAY, &ck, "n1", &sig).is_ok());
        // The same key under another prefix, a typo, the two-byte spelling.
        let polkadot = sp_core::crypto::Ss58Codec::to_ss58check_with_version(
            &sp_core::crypto::AccountId32::new(ss58::decode42(&ck).unwrap()),
            sp_core::crypto::Ss58AddressFormat::custom(0),
        );
        assert_eq!(
            verify("acme", GATEWAY, &polkadot, "n1", &sig),
            Err(LinkRefusal::Coldkey(Ss58Error::WrongPrefix(0)))
        );
        assert!(matches!(
            verify("acme", GATEWAY, "not-an-address", "n1", &sig),
            Err(LinkRefusal::Coldkey(_))
        ));
        for nonce in ["", "a b", "ü", "a/b", &"x".repeat(65)] {
            assert_eq!(
                verify("acme", GATEWAY, &ck, nonce, &sig),
                Err(LinkRefusal::Nonce),
                "{nonce:?}"
            );
        }
        assert!(valid_nonce(&"x".repeat(64)) && valid_nonce("A-z_0.9:"));
        for bad in [
            &sig[2..],
            &sig[..sig.len() - 2],
            "0x",
            "0xzz",
            &format!("{sig}00"),
        ] {
            assert_eq!(
                verify("acme", GATEWAY, &ck, "n1", bad),
                Err(LinkRefusal::SignatureShape),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_signature_binds_account_gateway_nonce_and_key() {
        let (ck, sig) = signed("//Charlie", "acme", "n1");
        assert_eq!(
            verify("other", GATEWAY, &ck, "n1", &sig),
            Err(LinkRefusal::BadSignature)
        );
        assert_eq!(
            verify(
                "acme",
                "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY",
                &ck,
                "n1",
                &sig
            ),
            Err(LinkRefusal::BadSignature)
        );
        assert_eq!(
            verify("acme", GATEWAY, &ck, "n2", &sig),
            Err(LinkRefusal::BadSignature)
        );
        let (dave, _) = signed("//Dave", "acme", "n1");
        assert_eq!(
            verify("acme", GATEWAY, &dave, "n1", &sig),
            Err(LinkRefusal::BadSignature)
        );
    }

    fn coldkey(uri: &str) -> ([u8; 32], String) {
        let p = sr25519::Pair::from_string(uri, None)
            .expect("dev uri")
            .public()
            .0;
        (p, ss58::encode42(&p))
    }

    #[tokio::test]
    async fn links_claim_once_and_nonces_are_single_use() {
        let s = Store::memory("t:");
        let (key, ck) = coldkey("//Charlie");
        assert_eq!(account_of(&s, &key).await.unwrap(), None);
        let Linked::Created(first) = link(&s, "acme", &ck, "n1").await.unwrap() else {
            panic!("first link creates");
        };
        assert_eq!(first.account, "acme");
        assert_eq!(account_of(&s, &key).await.unwrap().as_deref(), Some("acme"));
        // The same account again, with a fresh nonce: the first link, unchanged.
        assert_eq!(
            link(&s, "acme", &ck, "n2").await.unwrap(),
            Linked::Existing(first.clone())
        );
        assert!(matches!(
            link(&s, "acme", &ck, "n2").await,
            Err(LinkError::Refused(LinkRefusal::NonceUsed))
        ));
        assert!(matches!(
            link(&s, "other", &ck, "n3").await,
            Err(LinkError::Refused(LinkRefusal::LinkedElsewhere))
        ));
        assert_eq!(links_of(&s, "acme").await.unwrap(), vec![first]);
        assert!(links_of(&s, "other").await.unwrap().is_empty());
        // Unlinking from the wrong account does nothing.
        assert!(!unlink(&s, "other", &ck).await.unwrap());
        assert!(unlink(&s, "acme", &ck).await.unwrap());
        assert!(!unlink(&s, "acme", &ck).await.unwrap());
        assert_eq!(account_of(&s, &key).await.unwrap(), None);
        assert!(links_of(&s, "acme").await.unwrap().is_empty());
        // After the unlink, an old nonce stays spent; a new one links anywhere.
        assert!(matches!(
            link(&s, "other", &ck, "n1").await,
            Err(LinkError::Refused(LinkRefusal::NonceUsed))
        ));
        assert!(matches!(
            link(&s, "other", &ck, "n4").await.unwrap(),
            Linked::Created(l) if l.account == "other"
        ));
    }

    #[tokio::test]
    async fn concurrent_links_to_different_accounts_have_one_winner() {
        let s = Store::memory("t:");
        let (key, ck) = coldkey("//Eve");
        let mut tasks = Vec::new();
        for i in 0..16 {
            let (s, ck) = (s.clone(), ck.clone());
            tasks.push(tokio::spawn(async move {
                link(&s, &format!("acct-{i}"), &ck, &format!("n{i}")).await
            }));
        }
        let mut winners = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                Ok(Linked::Created(l)) => winners.push(l.account),
                Err(LinkError::Refused(LinkRefusal::LinkedElsewhere)) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "{winners:?}");
        assert_eq!(
            account_of(&s, &key).await.unwrap(),
            Some(winners[0].clone())
        );
    }
}
