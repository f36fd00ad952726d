//! Keys for the signing controllers: PEM blocks, private keys in any of the encodings upstream's
//! `keyutil.ParsePrivateKeyPEM` reads (PKCS#1 `RSA PRIVATE KEY`, SEC1 `EC PRIVATE KEY`, PKCS#8 `PRIVATE KEY`)
//! normalised to PKCS#8 for ring, and upstream's key id of a public key (`keyIDFromPublicKey`).

use base64::Engine;

/// The PEM blocks of `data`, as (label, DER).
pub fn pem_blocks(data: &[u8]) -> Vec<(String, Vec<u8>)> {
    x509_parser::pem::Pem::iter_from_buffer(data).map_while(Result::ok).map(|p| (p.label, p.contents)).collect()
}

/// The DER of the first PEM block labelled `label`.
pub fn pem_block(data: &[u8], label: &str) -> Option<Vec<u8>> {
    pem_blocks(data).into_iter().find(|(l, _)| l == label).map(|(_, der)| der)
}

const OID_RSA_ENCRYPTION: &[u8] = &[0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

/// One DER element: (tag, content, the bytes after it).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        (rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | *b as usize), &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// Encodes one DER element.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// The elements of a DER SEQUENCE.
fn sequence(input: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let (tag, mut content, _) = tlv(input)?;
    if tag != 0x30 {
        return None;
    }
    let mut items = Vec::new();
    while !content.is_empty() {
        let (t, c, rest) = tlv(content)?;
        items.push((t, c));
        content = rest;
    }
    Some(items)
}

/// A PKCS#8 PrivateKeyInfo around an inner key.
fn pkcs8(algorithm: &[u8], inner: &[u8]) -> Vec<u8> {
    let version = der(0x02, &[0]);
    let alg = der(0x30, algorithm);
    der(0x30, &[version, alg, der(0x04, inner)].concat())
}

/// The elliptic curves signing keys may be on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
}

impl Curve {
    fn from_oid(oid: &[u8]) -> Option<Curve> {
        match oid {
            _ if oid == &OID_P256[2..] => Some(Curve::P256),
            _ if oid == &OID_P384[2..] => Some(Curve::P384),
            _ => None,
        }
    }

    fn oid(self) -> &'static [u8] {
        match self {
            Curve::P256 => OID_P256,
            Curve::P384 => OID_P384,
        }
    }
}

/// A private key, in the encodings its users need.
#[derive(Clone)]
pub enum PrivateKey {
    Rsa { pkcs1: Vec<u8>, pkcs8: Vec<u8> },
    Ec { curve: Curve, pkcs8: Vec<u8> },
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PrivateKey::Rsa { .. } => f.write_str("PrivateKey::Rsa"),
            PrivateKey::Ec { curve, .. } => write!(f, "PrivateKey::Ec({curve:?})"),
        }
    }
}

impl PrivateKey {
    /// The first private key in PEM `data` (RSA or ECDSA on P-256 or P-384).
    pub fn from_pem(data: &[u8]) -> Result<PrivateKey, String> {
        for (label, body) in pem_blocks(data) {
            return match label.as_str() {
                "RSA PRIVATE KEY" => {
                    let alg = [OID_RSA_ENCRYPTION, &[0x05, 0x00]].concat();
                    Ok(PrivateKey::Rsa { pkcs8: pkcs8(&alg, &body), pkcs1: body })
                }
                "EC PRIVATE KEY" => Self::from_sec1(&body),
                "PRIVATE KEY" => Self::from_pkcs8(&body),
                _ => continue,
            };
        }
        Err("data does not contain a valid RSA or ECDSA private key".into())
    }

    fn from_sec1(sec1: &[u8]) -> Result<PrivateKey, String> {
        let items = sequence(sec1).ok_or("malformed EC private key")?;
        let params = items.iter().find(|(t, _)| *t == 0xa0).ok_or("EC private key without curve parameters")?;
        let (_, oid, _) = tlv(params.1).ok_or("malformed EC curve parameters")?;
        let curve = Curve::from_oid(oid).ok_or("unsupported elliptic curve (P-256 and P-384 are)")?;
        let alg = [OID_EC_PUBLIC_KEY, curve.oid()].concat();
        Ok(PrivateKey::Ec { curve, pkcs8: pkcs8(&alg, sec1) })
    }

    fn from_pkcs8(body: &[u8]) -> Result<PrivateKey, String> {
        let items = sequence(body).ok_or("malformed PKCS#8 private key")?;
        let (alg, inner) = match items.as_slice() {
            [(0x02, _), (0x30, alg), (0x04, inner), ..] => (*alg, *inner),
            _ => return Err("malformed PKCS#8 private key".into()),
        };
        let (_, oid, rest) = tlv(alg).ok_or("malformed PKCS#8 algorithm")?;
        if oid == &OID_RSA_ENCRYPTION[2..] {
            return Ok(PrivateKey::Rsa { pkcs1: inner.to_vec(), pkcs8: body.to_vec() });
        }
        if oid == &OID_EC_PUBLIC_KEY[2..] {
            let (_, curve, _) = tlv(rest).ok_or("PKCS#8 EC key without a curve")?;
            let curve = Curve::from_oid(curve).ok_or("unsupported elliptic curve (P-256 and P-384 are)")?;
            return Ok(PrivateKey::Ec { curve, pkcs8: body.to_vec() });
        }
        Err("unsupported private key type (RSA and ECDSA are)".into())
    }

    /// The PKCS#8 DER of the key.
    pub fn pkcs8(&self) -> &[u8] {
        match self {
            PrivateKey::Rsa { pkcs8, .. } | PrivateKey::Ec { pkcs8, .. } => pkcs8,
        }
    }

    /// The key as rcgen signs with it.
    pub fn key_pair(&self) -> Result<rcgen::KeyPair, String> {
        rcgen::KeyPair::try_from(self.pkcs8()).map_err(|e| format!("loading the private key: {e}"))
    }

    /// The DER PKIX (SubjectPublicKeyInfo) encoding of the public key, as Go's `x509.MarshalPKIXPublicKey`.
    pub fn public_key_der(&self) -> Result<Vec<u8>, String> {
        use rcgen::PublicKeyData;
        Ok(self.key_pair()?.subject_public_key_info())
    }
}

/// Upstream's `keyIDFromPublicKey`: the unpadded base64url SHA-256 of the DER PKIX public key.
pub fn key_id(public_key_der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, public_key_der);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Written by `openssl genrsa -traditional` and `openssl ecparam -genkey`; the key ids are
    // `openssl pkey -pubout -outform DER | openssl dgst -sha256 -binary`, base64url without padding.
    const RSA_PKCS1: &str = include_str!("../testdata/rsa-ca.key");
    const EC_SEC1: &str = include_str!("../testdata/ec-sa.key");

    #[test]
    fn keys_load_from_every_encoding_with_upstreams_key_id() {
        let rsa = PrivateKey::from_pem(RSA_PKCS1.as_bytes()).unwrap();
        assert!(matches!(rsa, PrivateKey::Rsa { .. }));
        assert_eq!(key_id(&rsa.public_key_der().unwrap()), "6zBt6ogg_K1hOHnzeS4nPXR-coxgM-SbNAv59wapZP8");
        let ec = PrivateKey::from_pem(EC_SEC1.as_bytes()).unwrap();
        assert!(matches!(ec, PrivateKey::Ec { curve: Curve::P256, .. }));
        assert_eq!(key_id(&ec.public_key_der().unwrap()), "MBVLFt46kmQWtdCDZGuN-37hKse-LAFtShwMKmGrC0Y");

        // PKCS#8, RSA and EC.
        let pem = |label: &str, der: &[u8]| {
            use base64::Engine;
            let b64 = base64::engine::general_purpose::STANDARD.encode(der);
            format!("-----BEGIN {label}-----\n{b64}\n-----END {label}-----\n")
        };
        let rsa8 = PrivateKey::from_pem(pem("PRIVATE KEY", rsa.pkcs8()).as_bytes()).unwrap();
        let PrivateKey::Rsa { pkcs1, .. } = &rsa8 else { panic!("not RSA") };
        let PrivateKey::Rsa { pkcs1: original, .. } = &rsa else { panic!("not RSA") };
        assert_eq!(pkcs1, original);
        let generated = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let ec8 = PrivateKey::from_pem(generated.serialize_pem().as_bytes()).unwrap();
        assert!(matches!(ec8, PrivateKey::Ec { curve: Curve::P384, .. }));
        use rcgen::PublicKeyData;
        assert_eq!(ec8.public_key_der().unwrap(), generated.subject_public_key_info());

        assert!(PrivateKey::from_pem(b"no key here").is_err());
    }

    #[test]
    fn key_id_is_the_unpadded_base64url_sha256() {
        // sha256("") = e3b0c442..., base64url without padding.
        assert_eq!(key_id(b""), "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU");
    }
}
