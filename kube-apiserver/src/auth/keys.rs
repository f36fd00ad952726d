//! Service-account signing and verification keys, read from PEM files as upstream's `keyutil` reads them (RSA and
//! ECDSA P-256 private keys in PKCS#1, SEC1 or PKCS#8 form, `PUBLIC KEY`/`RSA PUBLIC KEY` blocks and certificates),
//! each with upstream's key id (base64url of the SHA-256 of its DER public key) and its JSON Web Key.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RsaKeyPair};
use serde_json::{Value, json};

/// A key that verifies tokens.
#[derive(Clone)]
pub struct PublicKey {
    pub alg: Algorithm,
    pub kid: String,
    pub decoding: DecodingKey,
    /// The key as `/openid/v1/jwks` publishes it.
    pub jwk: Value,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({:?}, {})", self.alg, self.kid)
    }
}

/// The key that signs tokens, with its public half.
#[derive(Clone)]
pub struct SigningKey {
    pub encoding: EncodingKey,
    pub public: PublicKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({:?})", self.public)
    }
}

const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// One DER element: tag, length, content.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes: Vec<u8> = n.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

fn seq(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

fn bit_string(content: &[u8]) -> Vec<u8> {
    tlv(0x03, &[&[0u8][..], content].concat())
}

/// The SubjectPublicKeyInfo DER of an RSA key (from its PKCS#1 RSAPublicKey DER).
fn rsa_spki(rsa_public: &[u8]) -> Vec<u8> {
    seq(&[&seq(&[&tlv(0x06, OID_RSA), &[0x05, 0x00]]), &bit_string(rsa_public)])
}

/// The SubjectPublicKeyInfo DER of a P-256 key (from its uncompressed point).
fn ec_spki(point: &[u8]) -> Vec<u8> {
    seq(&[&seq(&[&tlv(0x06, OID_EC), &tlv(0x06, OID_P256)]), &bit_string(point)])
}

/// A SEC1 `EC PRIVATE KEY` wrapped as PKCS#8 (what ring reads).
fn sec1_to_pkcs8(sec1: &[u8]) -> Vec<u8> {
    seq(&[&[0x02, 0x01, 0x00], &seq(&[&tlv(0x06, OID_EC), &tlv(0x06, OID_P256)]), &tlv(0x04, sec1)])
}

/// Reads one DER element at the start of `der`: (tag, content, rest).
fn read_tlv(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        (rest[..n].iter().fold(0usize, |a, b| (a << 8) | *b as usize), &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The PKCS#1 RSAPrivateKey inside a PKCS#8 PrivateKeyInfo.
fn pkcs8_inner(pkcs8: &[u8]) -> Option<&[u8]> {
    let (_, body, _) = read_tlv(pkcs8)?;
    let (_, _version, rest) = read_tlv(body)?;
    let (_, _alg, rest) = read_tlv(rest)?;
    let (tag, key, _) = read_tlv(rest)?;
    (tag == 0x04).then_some(key)
}

/// Upstream's key id: base64url(SHA-256(DER SubjectPublicKeyInfo)).
pub fn key_id(spki: &[u8]) -> String {
    B64URL.encode(ring::digest::digest(&ring::digest::SHA256, spki))
}

/// The verification key of a SubjectPublicKeyInfo DER (RSA or P-256).
pub fn public_from_spki(spki: &[u8]) -> Result<PublicKey, String> {
    use x509_parser::prelude::FromDer;
    use x509_parser::public_key::PublicKey as Parsed;
    let (_, info) =
        x509_parser::x509::SubjectPublicKeyInfo::from_der(spki).map_err(|e| format!("bad public key: {e}"))?;
    let kid = key_id(spki);
    match info.parsed().map_err(|e| format!("bad public key: {e}"))? {
        Parsed::RSA(k) => {
            let n = k.modulus.strip_prefix(&[0]).unwrap_or(k.modulus);
            let e = k.exponent.strip_prefix(&[0]).unwrap_or(k.exponent);
            Ok(PublicKey {
                alg: Algorithm::RS256,
                jwk: json!({"use": "sig", "kty": "RSA", "kid": kid, "alg": "RS256", "n": B64URL.encode(n), "e": B64URL.encode(e)}),
                kid,
                decoding: DecodingKey::from_rsa_raw_components(n, e),
            })
        }
        Parsed::EC(point) => {
            let p = point.data();
            let curve = info.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok());
            if p.len() != 65 || p[0] != 4 || curve.map(|c| c.as_bytes() != OID_P256).unwrap_or(true) {
                return Err("only ECDSA keys on the P-256 curve are supported".into());
            }
            Ok(PublicKey {
                alg: Algorithm::ES256,
                jwk: json!({"use": "sig", "kty": "EC", "kid": kid, "crv": "P-256", "alg": "ES256",
                    "x": B64URL.encode(&p[1..33]), "y": B64URL.encode(&p[33..])}),
                kid,
                decoding: DecodingKey::from_ec_der(p),
            })
        }
        _ => Err("unsupported public key type (want RSA or ECDSA P-256)".into()),
    }
}

fn rsa_signing(pkcs1: &[u8]) -> Result<SigningKey, String> {
    let pair = RsaKeyPair::from_der(pkcs1).map_err(|e| format!("bad RSA private key: {e}"))?;
    let public = public_from_spki(&rsa_spki(pair.public_key().as_ref()))?;
    Ok(SigningKey { encoding: EncodingKey::from_rsa_der(pkcs1), public })
}

fn ec_signing(pkcs8: &[u8]) -> Result<SigningKey, String> {
    let rng = ring::rand::SystemRandom::new();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng)
        .map_err(|e| format!("bad ECDSA private key (P-256 only): {e}"))?;
    let public = public_from_spki(&ec_spki(pair.public_key().as_ref()))?;
    Ok(SigningKey { encoding: EncodingKey::from_ec_der(pkcs8), public })
}

/// What one PEM block holds.
enum Block {
    Private(SigningKey),
    Public(PublicKey),
}

fn pem_blocks(text: &str) -> Result<Vec<Block>, String> {
    use rustls_pemfile::Item;
    let mut out = Vec::new();
    let mut rest = text.as_bytes();
    while let Some((item, after)) = rustls_pemfile::read_one_from_slice(rest).map_err(|e| format!("bad PEM: {e:?}"))? {
        rest = after;
        out.push(match item {
            Item::Pkcs1Key(k) => Block::Private(rsa_signing(k.secret_pkcs1_der())?),
            Item::Sec1Key(k) => Block::Private(ec_signing(&sec1_to_pkcs8(k.secret_sec1_der()))?),
            Item::Pkcs8Key(k) => {
                let der = k.secret_pkcs8_der();
                match RsaKeyPair::from_pkcs8(der) {
                    Ok(_) => Block::Private(rsa_signing(pkcs8_inner(der).ok_or("bad PKCS#8 RSA key")?)?),
                    Err(_) => Block::Private(ec_signing(der)?),
                }
            }
            Item::SubjectPublicKeyInfo(k) => Block::Public(public_from_spki(k.as_ref())?),
            Item::X509Certificate(c) => {
                let (_, cert) =
                    x509_parser::parse_x509_certificate(c.as_ref()).map_err(|e| format!("bad certificate: {e}"))?;
                Block::Public(public_from_spki(cert.tbs_certificate.subject_pki.raw)?)
            }
            _ => continue,
        });
    }
    // `RSA PUBLIC KEY` (PKCS#1) blocks, which rustls-pemfile does not read.
    for block in text.split("-----BEGIN RSA PUBLIC KEY-----").skip(1) {
        let body = block.split("-----END RSA PUBLIC KEY-----").next().unwrap_or_default();
        let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
        let der = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|e| format!("bad PEM: {e}"))?;
        out.push(Block::Public(public_from_spki(&rsa_spki(&der))?));
    }
    Ok(out)
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))
}

/// Every key a `--service-account-key-file` holds, as verification keys (private keys contribute their public half).
pub fn load_public_keys(path: &Path) -> Result<Vec<PublicKey>, String> {
    let keys: Vec<PublicKey> = pem_blocks(&read(path)?)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .into_iter()
        .map(|b| match b {
            Block::Private(k) => k.public,
            Block::Public(k) => k,
        })
        .collect();
    if keys.is_empty() {
        return Err(format!("{}: no public or private keys found", path.display()));
    }
    Ok(keys)
}

/// The private key of `--service-account-signing-key-file`.
pub fn load_signing_key(path: &Path) -> Result<SigningKey, String> {
    pem_blocks(&read(path)?)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .into_iter()
        .find_map(|b| match b {
            Block::Private(k) => Some(k),
            Block::Public(_) => None,
        })
        .ok_or_else(|| format!("{}: no private key found", path.display()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes a fresh key in `form` ("rsa", "rsa-pkcs8", "ec", "ec-pkcs8") with openssl and returns its path.
    pub fn openssl_key(dir: &Path, name: &str, form: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        let run = |args: &[&str]| {
            let out = std::process::Command::new("openssl").args(args).output().expect("openssl");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        let p = path.to_str().unwrap();
        match form {
            "rsa" => run(&["genrsa", "-traditional", "-out", p, "2048"]),
            "rsa-pkcs8" => run(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", p]),
            "ec" => run(&["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", p]),
            "ec-pkcs8" => run(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", p]),
            _ => unreachable!(),
        }
        path
    }

    fn openssl_pub(key: &Path, out: &Path, rsa_pubkey: bool) {
        let mut args = vec![if rsa_pubkey { "rsa" } else { "pkey" }, "-in", key.to_str().unwrap()];
        args.extend(if rsa_pubkey { ["-RSAPublicKey_out", "-out"] } else { ["-pubout", "-out"] });
        args.push(out.to_str().unwrap());
        let st = std::process::Command::new("openssl").args(&args).output().unwrap();
        assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    }

    #[test]
    fn every_key_form_loads_with_one_key_id() {
        let dir = tempfile::tempdir().unwrap();
        for form in ["rsa", "rsa-pkcs8", "ec", "ec-pkcs8"] {
            let key = openssl_key(dir.path(), &format!("{form}.key"), form);
            let signing = load_signing_key(&key).unwrap();
            let pubfile = dir.path().join(format!("{form}.pub"));
            openssl_pub(&key, &pubfile, false);
            let public = load_public_keys(&pubfile).unwrap();
            assert_eq!(public.len(), 1);
            assert_eq!(public[0].kid, signing.public.kid, "{form}: the key id comes from the public key alone");
            assert_eq!(load_public_keys(&key).unwrap()[0].kid, signing.public.kid);
            // The kid is what `openssl pkey -pubout -outform DER | sha256 | base64url` gives, as upstream computes.
            let der = std::process::Command::new("openssl")
                .args(["pkey", "-in", key.to_str().unwrap(), "-pubout", "-outform", "DER"])
                .output()
                .unwrap()
                .stdout;
            assert_eq!(signing.public.kid, key_id(&der));
            let want = if form.starts_with("rsa") { Algorithm::RS256 } else { Algorithm::ES256 };
            assert_eq!(signing.public.alg, want);
        }
        let key = openssl_key(dir.path(), "r.key", "rsa");
        let rsapub = dir.path().join("r.rsapub");
        openssl_pub(&key, &rsapub, true);
        assert_eq!(load_public_keys(&rsapub).unwrap()[0].kid, load_signing_key(&key).unwrap().public.kid);
        let jwk = &load_public_keys(&rsapub).unwrap()[0].jwk;
        assert_eq!(jwk["e"], "AQAB");
        assert_eq!(jwk["kty"], "RSA");
        std::fs::write(dir.path().join("empty"), "nothing here").unwrap();
        assert!(load_public_keys(&dir.path().join("empty")).is_err());
        assert!(load_signing_key(&rsapub).is_err());
    }
}
