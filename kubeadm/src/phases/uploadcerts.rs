//! `kubeadm init phase upload-certs`: the control-plane CAs and service-account keys, encrypted with AES-256-GCM
//! under the certificate key, in the `kube-system/kubeadm-certs` Secret that expires with a 2h bootstrap token
//! (upstream's `phases/copycerts`); and the reverse for `join --control-plane`.

use std::path::PathBuf;

use base64::Engine;
use ring::aead;
use ring::rand::SecureRandom;
use serde_json::{Value, json};

use super::{Context, Error, Result, create_or_update, group, role, role_binding};
use crate::constants as k;

/// The files copied between control-plane nodes (upstream's `GetDataFromDisk` list).
pub const FILES: [&str; 10] = [
    "ca.crt",
    "ca.key",
    "front-proxy-ca.crt",
    "front-proxy-ca.key",
    "sa.key",
    "sa.pub",
    "etcd/ca.crt",
    "etcd/ca.key",
    "apiserver-etcd-client.crt",
    "apiserver-etcd-client.key",
];

/// A new certificate key: 32 random bytes, hex (`kubeadm certs certificate-key`).
pub fn generate_certificate_key() -> String {
    let mut b = [0u8; 32];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn key(hex: &str) -> Result<aead::LessSafeKey> {
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2).unwrap_or("zz"), 16))
        .collect::<Result<_, _>>()
        .map_err(|_| Error::Other("the certificate key must be 64 hexadecimal characters".into()))?;
    let unbound = aead::UnboundKey::new(&aead::AES_256_GCM, &bytes)
        .map_err(|_| Error::Other("the certificate key must be 32 bytes (64 hexadecimal characters)".into()))?;
    Ok(aead::LessSafeKey::new(unbound))
}

/// Upstream's `cryptoutil.EncryptBytes`: nonce || ciphertext || tag.
pub fn encrypt(data: &[u8], cert_key: &str) -> Result<Vec<u8>> {
    let k = key(cert_key)?;
    let mut nonce = [0u8; 12];
    ring::rand::SystemRandom::new().fill(&mut nonce).map_err(|_| Error::Other("no randomness".into()))?;
    let mut buf = data.to_vec();
    k.seal_in_place_append_tag(aead::Nonce::assume_unique_for_key(nonce), aead::Aad::empty(), &mut buf)
        .map_err(|_| Error::Other("encryption failed".into()))?;
    let mut out = nonce.to_vec();
    out.extend(buf);
    Ok(out)
}

pub fn decrypt(data: &[u8], cert_key: &str) -> Result<Vec<u8>> {
    let k = key(cert_key)?;
    if data.len() < 12 {
        return Err(Error::Other("size of data is less than the nonce".into()));
    }
    let (nonce, rest) = data.split_at(12);
    let nonce = aead::Nonce::try_assume_unique_for_key(nonce).map_err(|_| Error::Other("bad nonce".into()))?;
    let mut buf = rest.to_vec();
    let plain = k
        .open_in_place(nonce, aead::Aad::empty(), &mut buf)
        .map_err(|_| Error::Other("error decoding secret: cipher: message authentication failed".into()))?;
    Ok(plain.to_vec())
}

/// Secret data key of a file (upstream's `certOrKeyNameToSecretName`: `/` becomes `-`).
pub fn secret_key(file: &str) -> String {
    file.replace('/', "-")
}

pub async fn upload(ctx: &Context, c: &client::Client, cert_dir: &str, cert_key: &str) -> Result<()> {
    ctx.out.line(format!(
        "[upload-certs] Storing the certificates in Secret {:?} in the {:?} Namespace",
        k::KUBEADM_CERTS_SECRET,
        k::KUBE_SYSTEM
    ));
    // The Secret is owned by a short-lived token, so the garbage collector removes it when the token expires.
    let token = crate::config::BootstrapToken {
        token: crate::token::generate(),
        ttl: Some("2h0m0s".into()),
        description: format!("Proxy for managing TTL for the {} secret", k::KUBEADM_CERTS_SECRET),
        ..Default::default()
    };
    let tsecret = crate::token::to_secret(&token, ctx.now()).map_err(Error::Other)?;
    let created = create_or_update(c, "", "v1", "secrets", &tsecret).await?;
    let mut data = serde_json::Map::new();
    for f in FILES {
        let path = PathBuf::from(cert_dir).join(f);
        if let Ok(bytes) = ctx.fs.read(&path) {
            let enc = encrypt(&bytes, cert_key)?;
            data.insert(secret_key(f), json!(base64::engine::general_purpose::STANDARD.encode(enc)));
        }
    }
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {
            "name": k::KUBEADM_CERTS_SECRET, "namespace": k::KUBE_SYSTEM,
            "ownerReferences": [{"apiVersion": "v1", "kind": "Secret", "name": created["metadata"]["name"], "uid": created["metadata"]["uid"], "blockOwnerDeletion": true, "controller": true}],
        },
        "type": "Opaque",
        "data": data,
    });
    create_or_update(c, "", "v1", "secrets", &secret).await?;
    let name = "kubeadm:kubeadm-certs";
    let r = role(
        k::KUBE_SYSTEM,
        name,
        json!([{"apiGroups": [""], "resources": ["secrets"], "resourceNames": [k::KUBEADM_CERTS_SECRET], "verbs": ["get"]}]),
    );
    create_or_update(c, "rbac.authorization.k8s.io", "v1", "roles", &r).await?;
    let rb = role_binding(k::KUBE_SYSTEM, name, name, json!([group(k::NODE_BOOTSTRAP_TOKEN_AUTH_GROUP)]));
    create_or_update(c, "rbac.authorization.k8s.io", "v1", "rolebindings", &rb).await?;
    ctx.out.line("[upload-certs] Using certificate key:");
    ctx.out.line(cert_key);
    Ok(())
}

/// Writes the files of the `kubeadm-certs` Secret under `cert_dir` (join --control-plane).
pub async fn download(ctx: &Context, c: &client::Client, cert_dir: &str, cert_key: &str) -> Result<()> {
    ctx.out.line(format!(
        "[download-certs] Downloading the certificates in Secret {:?} in the {:?} Namespace",
        k::KUBEADM_CERTS_SECRET,
        k::KUBE_SYSTEM
    ));
    let secret = c.api("", "v1", "secrets")?.namespaced(k::KUBE_SYSTEM).get(k::KUBEADM_CERTS_SECRET).await?;
    for f in FILES {
        let Some(v) = secret.pointer("/data").and_then(|d| d.get(secret_key(f))).and_then(Value::as_str) else {
            continue;
        };
        let enc = base64::engine::general_purpose::STANDARD.decode(v).map_err(|e| Error::Other(e.to_string()))?;
        let plain = decrypt(&enc, cert_key)?;
        let path = PathBuf::from(cert_dir).join(f);
        let mode = if f.ends_with(".key") { 0o600 } else { 0o644 };
        ctx.fs.write(&path, &plain, mode).map_err(super::io(&path))?;
    }
    ctx.out.line("[download-certs] Saving the certificates to the folder: ".to_string() + &format!("{cert_dir:?}"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encryption_round_trips_and_rejects_other_keys() {
        let k1 = generate_certificate_key();
        assert_eq!(k1.len(), 64);
        let enc = encrypt(b"secret ca key", &k1).unwrap();
        assert_eq!(decrypt(&enc, &k1).unwrap(), b"secret ca key");
        assert!(decrypt(&enc, &generate_certificate_key()).is_err());
        assert!(encrypt(b"x", "abc").is_err());
        assert_eq!(secret_key("etcd/ca.crt"), "etcd-ca.crt");
    }
}
