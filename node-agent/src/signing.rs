//! Signed packages: a publisher signs a function's module and manifest with an Ed25519 key
//! (`liquid publisher init`, `liquid fn deploy --sign KEY`); a cluster that requires
//! signatures (`--require-signed` with `--trust-publisher KEY`, on every agent) refuses an
//! unsigned package, a forged signature, or one from a publisher it does not trust — at
//! deploy, and again on every node before it runs the module, so a node that did not take the
//! deploy refuses it too. (Anchors: wasmCloud's signed claims, cosign.)
//!
//! What is signed: the module's BLAKE3 hash and the manifest as it is stored in the registry
//! (limits, object namespaces, placement: what the function may do), so neither the bytes nor
//! the permissions can be swapped under a signature. The signature travels in the registry
//! entry; the key is never on the agents, only the publishers' public keys are.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, Result, bail};
use libp2p::identity::ed25519;
use liquid_core::functions::PackageSignature;
use wasm_host::Manifest;
use wasm_host::manifest::ModuleHash;

/// The deploy request's header carrying `PUBLISHER_HEX:SIGNATURE_HEX`.
pub const SIGNATURE_HEADER: &str = "liquid-signature";
const KEY_PREFIX: &str = "liquid-publisher-key-v1:";
const CONTEXT: &[u8] = b"liquid package signature v1\n";

/// A publisher's signing key.
pub struct PublisherKey(ed25519::Keypair);

impl PublisherKey {
    /// A new random key.
    pub fn generate() -> Self {
        PublisherKey(ed25519::Keypair::generate())
    }

    /// Writes the key, readable by its owner only.
    pub fn save(&self, path: &Path) -> Result<()> {
        let secret = self.0.secret();
        let text = format!("{KEY_PREFIX}{}\n", hex::encode(secret.as_ref()));
        mesh::identity::write_private(path, text.as_bytes()).with_context(|| format!("writing {}", path.display()))
    }

    /// Reads a key written by [`PublisherKey::save`].
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let Some(hex_key) = text.trim().strip_prefix(KEY_PREFIX) else {
            bail!("{} is not a publisher key (create one with `liquid publisher init --out FILE`)", path.display());
        };
        let mut bytes = hex::decode(hex_key)
            .ok()
            .filter(|b| b.len() == 32)
            .with_context(|| format!("{}: the key must be 64 hex digits", path.display()))?;
        let secret = ed25519::SecretKey::try_from_bytes(&mut bytes)
            .with_context(|| format!("{}: not an Ed25519 secret key", path.display()))?;
        Ok(PublisherKey(ed25519::Keypair::from(secret)))
    }

    /// The public key, in hex: what agents are told to trust.
    pub fn public_hex(&self) -> String {
        hex::encode(self.0.public().to_bytes())
    }

    /// Signs a package.
    pub fn sign(&self, hash: &ModuleHash, manifest: &Manifest) -> PackageSignature {
        PackageSignature { publisher: self.public_hex(), signature: hex::encode(self.0.sign(&message(hash, manifest))) }
    }
}

/// The signed bytes: a context string, the module hash, and the manifest as canonical JSON
/// (struct fields in declaration order, without the local `module` file name).
fn message(hash: &ModuleHash, manifest: &Manifest) -> Vec<u8> {
    let mut m = manifest.clone();
    m.module = None;
    let mut out = CONTEXT.to_vec();
    out.extend_from_slice(hash.to_hex().as_bytes());
    out.push(b'\n');
    out.extend_from_slice(&serde_json::to_vec(&m).unwrap_or_default());
    out
}

/// Whether `sig` is a valid signature of the package by the key it names.
pub fn verify(sig: &PackageSignature, hash: &ModuleHash, manifest: &Manifest) -> Result<(), String> {
    let public = hex::decode(&sig.publisher)
        .ok()
        .and_then(|b| ed25519::PublicKey::try_from_bytes(&b).ok())
        .ok_or_else(|| format!("the signature names {:?}, which is not an Ed25519 public key", sig.publisher))?;
    let bytes = hex::decode(&sig.signature).map_err(|_| "the signature is not hex".to_string())?;
    if public.verify(&message(hash, manifest), &bytes) {
        Ok(())
    } else {
        Err(format!("the signature by {} does not match this module and manifest", short(&sig.publisher)))
    }
}

/// Parses the deploy header `PUBLISHER_HEX:SIGNATURE_HEX`.
pub fn parse_header(value: &str) -> Option<PackageSignature> {
    let (publisher, signature) = value.trim().split_once(':')?;
    Some(PackageSignature { publisher: publisher.to_string(), signature: signature.to_string() })
}

/// The header value for `sig`.
pub fn header_value(sig: &PackageSignature) -> String {
    format!("{}:{}", sig.publisher, sig.signature)
}

/// What a node accepts.
#[derive(Clone, Debug, Default)]
pub struct Trust {
    /// Refuse unsigned packages and unknown publishers.
    pub required: bool,
    /// The trusted publishers' public keys, hex.
    pub publishers: BTreeSet<String>,
}

impl Trust {
    /// Checks a package against this node's trust: an error says why it is refused. A
    /// signature, when present, must be valid even if signatures are not required.
    pub fn check(&self, sig: Option<&PackageSignature>, hash: &ModuleHash, manifest: &Manifest) -> Result<(), String> {
        match sig {
            None if self.required => Err(format!(
                "{} is not signed, and this cluster requires signed packages (liquid fn deploy --sign KEY)",
                manifest.name
            )),
            None => Ok(()),
            Some(s) => {
                verify(s, hash, manifest)?;
                if self.required && !self.publishers.contains(&s.publisher.to_ascii_lowercase()) {
                    return Err(format!(
                        "{} is signed by {}, a publisher this node does not trust (--trust-publisher)",
                        manifest.name,
                        short(&s.publisher)
                    ));
                }
                Ok(())
            }
        }
    }
}

fn short(hex: &str) -> &str {
    hex.get(..16).unwrap_or(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package() -> (ModuleHash, Manifest) {
        (ModuleHash::of(b"\0asm module"), Manifest::for_module("f"))
    }

    #[test]
    fn signatures_bind_module_and_manifest_and_keys_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("publisher.key");
        let key = PublisherKey::generate();
        key.save(&path).unwrap();
        let again = PublisherKey::load(&path).unwrap();
        assert_eq!(again.public_hex(), key.public_hex());
        let (hash, manifest) = package();
        let sig = again.sign(&hash, &manifest);
        assert_eq!(verify(&sig, &hash, &manifest), Ok(()));
        assert_eq!(parse_header(&header_value(&sig)), Some(sig.clone()));
        // Another module, a widened permission, another key: refused.
        assert!(verify(&sig, &ModuleHash::of(b"other"), &manifest).is_err());
        let mut wider = manifest.clone();
        wider.objects.write = vec!["everything".into()];
        assert!(verify(&sig, &hash, &wider).is_err());
        let forged = PackageSignature { publisher: PublisherKey::generate().public_hex(), ..sig.clone() };
        assert!(verify(&forged, &hash, &manifest).is_err());
        for garbage in ["", "zz", "00"] {
            let g = PackageSignature { publisher: garbage.into(), signature: garbage.into() };
            assert!(verify(&g, &hash, &manifest).is_err());
        }
        std::fs::write(&path, "liquid-publisher-key-v1:é").unwrap();
        assert!(PublisherKey::load(&path).is_err());
    }

    #[test]
    fn trust_requires_a_valid_signature_by_a_trusted_publisher() {
        let (hash, manifest) = package();
        let (ours, theirs) = (PublisherKey::generate(), PublisherKey::generate());
        let open = Trust::default();
        assert!(open.check(None, &hash, &manifest).is_ok());
        let strict = Trust { required: true, publishers: [ours.public_hex()].into() };
        assert!(strict.check(None, &hash, &manifest).unwrap_err().contains("not signed"));
        assert!(strict.check(Some(&ours.sign(&hash, &manifest)), &hash, &manifest).is_ok());
        let e = strict.check(Some(&theirs.sign(&hash, &manifest)), &hash, &manifest).unwrap_err();
        assert!(e.contains("does not trust"), "{e}");
        // A bad signature is refused even where signatures are optional.
        let bad = PackageSignature { signature: "00".repeat(64), ..ours.sign(&hash, &manifest) };
        assert!(open.check(Some(&bad), &hash, &manifest).is_err());
    }
}
