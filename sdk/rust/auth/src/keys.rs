//! Keys that sign requests, and every way a client loads one: a hex seed, a secret URI
//! (`//Alice`, with derivations), a BIP-39 mnemonic, or a bittensor wallet's hotkey file.
//!
//! Errors never carry the secret they were given (a seed, a phrase or a URI is a secret and
//! must not end up in logs), only what kind of input was refused.

use std::path::{Path, PathBuf};

use sp_core::{Pair, ed25519, sr25519};
use zeroize::Zeroizing;

/// Signature scheme of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crypto {
    /// Schnorrkel over Ristretto, signing context `substrate` (Bittensor's default).
    Sr25519,
    /// Ed25519.
    Ed25519,
}

impl Crypto {
    /// The scheme's name as btauth/1 writes it (`sr25519`, `ed25519`).
    pub fn name(self) -> &'static str {
        match self {
            Crypto::Sr25519 => "sr25519",
            Crypto::Ed25519 => "ed25519",
        }
    }
}

/// Why a key could not be loaded. No variant carries secret material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The secret URI (or mnemonic, or seed) does not parse.
    #[error("invalid secret URI")]
    InvalidUri,
    /// The seed is not 32 bytes of hex (optionally `0x`-prefixed).
    #[error("invalid seed: expected 32 bytes of hex")]
    InvalidSeed,
    /// The phrase is not a valid BIP-39 mnemonic.
    #[error("invalid mnemonic phrase")]
    InvalidMnemonic,
    /// The wallet file could not be read.
    #[error("cannot read wallet file {path}: {source}")]
    WalletRead {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The wallet file is encrypted; only unencrypted hotkey files can be loaded.
    #[error(
        "wallet file {0} is encrypted; decrypt it with the bittensor CLI or load the key another way"
    )]
    WalletEncrypted(PathBuf),
    /// The wallet file is not the bittensor keyfile JSON, or its seed does not give its
    /// address under either scheme.
    #[error("wallet file {path} is not a usable bittensor keyfile: {reason}")]
    WalletFormat {
        /// The file.
        path: PathBuf,
        /// What is wrong (never a secret).
        reason: &'static str,
    },
    /// No home directory to find `~/.bittensor/wallets` in.
    #[error("no home directory (HOME is unset); give the wallet path explicitly")]
    NoHome,
    /// The operation needs another scheme (coldkey links are sr25519 only).
    #[error("this operation needs an {0:?} key")]
    WrongCrypto(Crypto),
}

/// A hotkey able to sign btauth/1 requests.
// Keys are few and long-lived (one per client), so boxing the larger variant would buy
// nothing but an indirection and a less direct API.
#[expect(
    clippy::large_enum_variant,
    reason = "a handful of long-lived keys, never stored in bulk"
)]
#[derive(Clone)]
pub enum KeyPair {
    /// An sr25519 key.
    Sr25519(sr25519::Pair),
    /// An ed25519 key.
    Ed25519(ed25519::Pair),
}

impl KeyPair {
    /// Builds a key from a secret URI (`//Alice`, a mnemonic with derivations, a `0x` seed).
    pub fn from_uri(uri: &str, crypto: Crypto) -> Result<KeyPair, KeyError> {
        match crypto {
            Crypto::Sr25519 => sr25519::Pair::from_string(uri, None)
                .map(KeyPair::Sr25519)
                .map_err(|_| KeyError::InvalidUri),
            Crypto::Ed25519 => ed25519::Pair::from_string(uri, None)
                .map(KeyPair::Ed25519)
                .map_err(|_| KeyError::InvalidUri),
        }
    }

    /// Builds a key from a 32-byte seed in hex (`0x` optional): the "mini secret" of sr25519,
    /// the secret key of ed25519, as `Keypair.create_from_seed` takes it.
    pub fn from_seed_hex(seed: &str, crypto: Crypto) -> Result<KeyPair, KeyError> {
        let hex_part = seed.strip_prefix("0x").unwrap_or(seed);
        let bytes = Zeroizing::new(hex::decode(hex_part).map_err(|_| KeyError::InvalidSeed)?);
        Self::from_seed_bytes(&bytes, crypto).ok_or(KeyError::InvalidSeed)
    }

    /// Builds a key from a BIP-39 mnemonic (with an optional password), as
    /// `Keypair.create_from_mnemonic` does.
    pub fn from_mnemonic(
        phrase: &str,
        password: Option<&str>,
        crypto: Crypto,
    ) -> Result<KeyPair, KeyError> {
        match crypto {
            Crypto::Sr25519 => sr25519::Pair::from_phrase(phrase, password)
                .map(|(pair, _)| KeyPair::Sr25519(pair))
                .map_err(|_| KeyError::InvalidMnemonic),
            Crypto::Ed25519 => ed25519::Pair::from_phrase(phrase, password)
                .map(|(pair, _)| KeyPair::Ed25519(pair))
                .map_err(|_| KeyError::InvalidMnemonic),
        }
    }

    /// Loads the hotkey `hotkey` of wallet `wallet` from `~/.bittensor/wallets`, where the
    /// bittensor SDK keeps them (`<wallets>/<wallet>/hotkeys/<hotkey>`).
    pub fn from_wallet(wallet: &str, hotkey: &str) -> Result<KeyPair, KeyError> {
        let home = std::env::var_os("HOME").ok_or(KeyError::NoHome)?;
        let dir = Path::new(&home).join(".bittensor").join("wallets");
        Self::from_wallet_in(&dir, wallet, hotkey)
    }

    /// Loads a hotkey from a wallets directory laid out as the bittensor SDK does.
    pub fn from_wallet_in(dir: &Path, wallet: &str, hotkey: &str) -> Result<KeyPair, KeyError> {
        Self::from_keyfile(&dir.join(wallet).join("hotkeys").join(hotkey))
    }

    /// Loads an unencrypted bittensor keyfile (JSON with `secretSeed` and `ss58Address`).
    ///
    /// The file does not say its scheme, so the seed is taken under the scheme whose key has
    /// the file's `ss58Address` (sr25519 first, the bittensor default); a seed matching
    /// neither is refused rather than guessed.
    pub fn from_keyfile(path: &Path) -> Result<KeyPair, KeyError> {
        let text = Zeroizing::new(std::fs::read(path).map_err(|source| KeyError::WalletRead {
            path: path.to_owned(),
            source,
        })?);
        let format = |reason| KeyError::WalletFormat {
            path: path.to_owned(),
            reason,
        };
        // The encrypted keyfile formats bittensor writes (NaCl, Ansible vault, legacy Fernet).
        if [&b"$NACL"[..], b"$ANSIBLE_VAULT", b"gAAAAA"]
            .iter()
            .any(|prefix| text.starts_with(prefix))
        {
            return Err(KeyError::WalletEncrypted(path.to_owned()));
        }
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Keyfile {
            secret_seed: Option<String>,
            ss58_address: Option<String>,
        }
        let file: Keyfile =
            serde_json::from_slice(&text).map_err(|_| format("not keyfile JSON"))?;
        let seed = Zeroizing::new(
            file.secret_seed
                .ok_or_else(|| format("no secretSeed (a public-only keyfile?)"))?,
        );
        let address = file.ss58_address.ok_or_else(|| format("no ss58Address"))?;
        for crypto in [Crypto::Sr25519, Crypto::Ed25519] {
            let key = Self::from_seed_hex(&seed, crypto).map_err(|_| format("bad secretSeed"))?;
            if key.ss58() == address {
                return Ok(key);
            }
        }
        Err(format("secretSeed does not give ss58Address"))
    }

    fn from_seed_bytes(bytes: &[u8], crypto: Crypto) -> Option<KeyPair> {
        match crypto {
            Crypto::Sr25519 => sr25519::Pair::from_seed_slice(bytes)
                .ok()
                .map(KeyPair::Sr25519),
            Crypto::Ed25519 => ed25519::Pair::from_seed_slice(bytes)
                .ok()
                .map(KeyPair::Ed25519),
        }
    }

    /// The key's SS58 address (prefix 42).
    pub fn ss58(&self) -> String {
        crate::ss58::encode42(&self.public())
    }

    /// The raw 32-byte public key.
    pub fn public(&self) -> [u8; 32] {
        match self {
            KeyPair::Sr25519(pair) => pair.public().0,
            KeyPair::Ed25519(pair) => pair.public().0,
        }
    }

    /// The key's scheme.
    pub fn crypto(&self) -> Crypto {
        match self {
            KeyPair::Sr25519(_) => Crypto::Sr25519,
            KeyPair::Ed25519(_) => Crypto::Ed25519,
        }
    }

    /// Signs raw bytes (sr25519 under the `substrate` context).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        match self {
            KeyPair::Sr25519(pair) => pair.sign(message).0,
            KeyPair::Ed25519(pair) => pair.sign(message).0,
        }
    }
}

impl std::fmt::Debug for KeyPair {
    // Only the public half: a derived Debug could print secret material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("crypto", &self.crypto())
            .field("ss58", &self.ss58())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";
    /// The Substrate development phrase; `//Alice` is derived from it.
    const DEV_PHRASE: &str =
        "bottom drive obey lake curtain smoke basket hold race lonely fit walk";

    #[test]
    fn dev_keys_have_their_well_known_addresses() {
        let alice = KeyPair::from_uri("//Alice", Crypto::Sr25519).expect("dev key");
        assert_eq!(alice.ss58(), ALICE);
        let alice_ed = KeyPair::from_uri("//Alice", Crypto::Ed25519).expect("dev key");
        assert_eq!(
            alice_ed.ss58(),
            "5FA9nQDVg267DEd8m1ZypXLBnvN7SFxYwV7ndqSYGiN9TTpu"
        );
        assert_eq!(alice_ed.crypto(), Crypto::Ed25519);
    }

    #[test]
    fn bad_inputs_are_refused_without_echoing_them() {
        let err = KeyPair::from_uri("not a secret uri ///", Crypto::Sr25519).expect_err("refused");
        assert!(!err.to_string().contains("secret uri ///"));
        let err = KeyPair::from_seed_hex("0xdeadbeef", Crypto::Sr25519).expect_err("short");
        assert!(matches!(err, KeyError::InvalidSeed));
        assert!(!err.to_string().contains("deadbeef"));
        let err = KeyPair::from_mnemonic("bottom drive obey", None, Crypto::Sr25519)
            .expect_err("too short");
        assert!(!err.to_string().contains("bottom"));
    }

    #[test]
    fn debug_shows_only_the_public_half() {
        let alice = KeyPair::from_uri("//Alice", Crypto::Sr25519).expect("dev key");
        let shown = format!("{alice:?}");
        assert!(shown.contains("5GrwvaEF"), "{shown}");
        assert!(!shown.contains("secret"), "{shown}");
    }

    #[test]
    fn seeds_mnemonics_and_uris_agree() {
        let (pair, seed) = sr25519::Pair::from_phrase(DEV_PHRASE, None).expect("phrase");
        let from_phrase = KeyPair::from_mnemonic(DEV_PHRASE, None, Crypto::Sr25519).expect("ok");
        assert_eq!(from_phrase.public(), pair.public().0);
        let from_seed =
            KeyPair::from_seed_hex(&format!("0x{}", hex::encode(seed)), Crypto::Sr25519)
                .expect("seed");
        assert_eq!(from_seed.public(), pair.public().0);
        let derived =
            KeyPair::from_uri(&format!("{DEV_PHRASE}//Alice"), Crypto::Sr25519).expect("derived");
        assert_eq!(derived.ss58(), ALICE);
        let ed = KeyPair::from_mnemonic(DEV_PHRASE, None, Crypto::Ed25519).expect("ed");
        assert_eq!(ed.crypto(), Crypto::Ed25519);
        assert_ne!(ed.public(), from_phrase.public());
    }

    fn keyfile(dir: &Path, wallet: &str, hotkey: &str, body: &str) -> PathBuf {
        let hotkeys = dir.join(wallet).join("hotkeys");
        std::fs::create_dir_all(&hotkeys).expect("dirs");
        let path = hotkeys.join(hotkey);
        std::fs::write(&path, body).expect("write");
        path
    }

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "affine-reason-auth-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn wallet_hotkey_files_load_under_the_scheme_of_their_address() {
        let dir = temp_dir();
        for crypto in [Crypto::Sr25519, Crypto::Ed25519] {
            let seed = [7u8; 32];
            let key = KeyPair::from_seed_bytes(&seed, crypto).expect("seed");
            // The shape bittensor-wallet writes (unencrypted).
            let body = serde_json::json!({
                "accountId": format!("0x{}", hex::encode(key.public())),
                "publicKey": format!("0x{}", hex::encode(key.public())),
                "secretPhrase": null,
                "secretSeed": format!("0x{}", hex::encode(seed)),
                "ss58Address": key.ss58(),
            });
            let name = crypto.name();
            keyfile(&dir, "w", name, &body.to_string());
            let loaded = KeyPair::from_wallet_in(&dir, "w", name).expect("loads");
            assert_eq!(loaded.crypto(), crypto);
            assert_eq!(loaded.ss58(), key.ss58());
        }
        let enc = keyfile(&dir, "w", "enc", "$NACL0123456789");
        assert!(matches!(
            KeyPair::from_keyfile(&enc),
            Err(KeyError::WalletEncrypted(_))
        ));
        let wrong = keyfile(
            &dir,
            "w",
            "wrong",
            &serde_json::json!({"secretSeed": format!("0x{}", "11".repeat(32)), "ss58Address": ALICE})
                .to_string(),
        );
        let err = KeyPair::from_keyfile(&wrong).expect_err("mismatch");
        assert!(matches!(err, KeyError::WalletFormat { .. }), "{err}");
        assert!(!err.to_string().contains(&"11".repeat(32)));
        assert!(matches!(
            KeyPair::from_wallet_in(&dir, "w", "missing"),
            Err(KeyError::WalletRead { .. })
        ));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
