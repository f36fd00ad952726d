//! Pod networking: the kubelet writes a CNI config for its pod CIDR (Debian's bridge + host-local + portmap +
//! loopback plugins), which containerd applies to every non-host-network sandbox. Upstream leaves this to a
//! network add-on; for a single node (and kubenet's old role) the kubelet does it here.

use std::path::{Path, PathBuf};

use serde_json::json;

pub const CONFIG_FILE: &str = "10-kubelet-bridge.conflist";

/// The conflist for a pod CIDR.
pub fn config(bridge: &str, pod_cidr: &str, ipam_dir: &Path) -> serde_json::Value {
    json!({
        "cniVersion": "0.4.0",
        "name": "kubelet-bridge",
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": true,
                // No masquerading: pods talk to the node and each other, nothing else is set up for them.
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": pod_cidr}]],
                    // Everything beyond the pod CIDR goes through the node (the bridge's address): Service
                    // ClusterIPs, which kube-proxy translates, and other nodes' pod CIDRs (host-gw routes).
                    "routes": [{"dst": if pod_cidr.contains(':') { "::/0" } else { "0.0.0.0/0" }}],
                    "dataDir": ipam_dir.display().to_string(),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": true}},
            {"type": "loopback"},
        ],
    })
}

/// Writes the config (atomically) if it differs from what is there.
pub fn write(conf_dir: &Path, bridge: &str, pod_cidr: &str, ipam_dir: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(conf_dir)?;
    let path = conf_dir.join(CONFIG_FILE);
    let text = serde_json::to_string_pretty(&config(bridge, pod_cidr, ipam_dir))?;
    if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
        let tmp = conf_dir.join(format!(".{CONFIG_FILE}.tmp"));
        std::fs::write(&tmp, &text)?;
        std::fs::rename(&tmp, &path)?;
        tracing::info!(path = %path.display(), pod_cidr, "wrote the pod network config");
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_config_for_the_pod_cidr() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "cni0", "10.244.1.0/24", Path::new("/var/lib/cni/networks")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
        assert_eq!(v["plugins"][0]["type"], "bridge");
        assert_eq!(v["plugins"][0]["ipam"]["ranges"][0][0]["subnet"], "10.244.1.0/24");
        assert_eq!(v["plugins"][0]["ipam"]["routes"][0]["dst"], "0.0.0.0/0");
        assert_eq!(v["plugins"][0]["ipMasq"], false);
    }
}
