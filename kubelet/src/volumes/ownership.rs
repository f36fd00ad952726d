//! Volume ownership for a pod's `fsGroup` (upstream's pkg/volume/volume_linux.go SetVolumeOwnership): every file
//! and directory of the volume gets the fsGroup as its group (symlinks included, their targets' modes untouched),
//! files gain group read (read-only volumes) or read-write, directories also group search and the setgid bit so
//! that what is created in them later belongs to the fsGroup too. `fsGroupChangePolicy: OnRootMismatch` skips the
//! walk when the volume's root already has the group and those permissions.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Group read-write for writable volumes, group read for read-only ones; directories also get group search and
/// setgid.
const RW_MASK: u32 = 0o660;
const RO_MASK: u32 = 0o440;
const EXEC_MASK: u32 = 0o110;
const SETGID: u32 = 0o2000;

/// `fsGroupChangePolicy`. Upstream applies the pod's to persistent volumes only: emptyDir and the atomic-writer
/// volumes (configMap, secret, downwardAPI, projected) always change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangePolicy {
    /// Always walk the whole volume (the default).
    Always,
    /// Walk only when the root's group or permissions do not match.
    OnRootMismatch,
}

/// The pod's `fsGroup`, if any.
pub fn fs_group(pod: &serde_json::Value) -> Option<u32> {
    pod.pointer("/spec/securityContext/fsGroup").and_then(serde_json::Value::as_u64).and_then(|g| u32::try_from(g).ok())
}

/// Upstream's requiresPermissionChange: the root is not a directory, or lacks the group, the permissions or setgid.
fn requires_permission_change(root: &Path, gid: u32, readonly: bool) -> bool {
    let Ok(meta) = std::fs::metadata(root) else { return true };
    if meta.gid() != gid || !meta.is_dir() {
        return true;
    }
    let wanted = if readonly { RO_MASK } else { RW_MASK } | SETGID;
    meta.mode() & wanted != wanted
}

/// One file's group and mode (upstream's changeFilePermission). Failures are logged, as upstream's.
fn change_file_permission(path: &Path, gid: u32, readonly: bool, meta: &std::fs::Metadata) {
    if let Err(e) = std::os::unix::fs::lchown(path, None, Some(gid)) {
        tracing::warn!(path = %path.display(), error = %e, "lchown for the pod's fsGroup failed");
    }
    // A symlink's mode means nothing, and chmod would change its target's.
    if meta.file_type().is_symlink() {
        return;
    }
    let mut mask = if readonly { RO_MASK } else { RW_MASK };
    if meta.is_dir() {
        mask |= SETGID | EXEC_MASK;
    }
    let mode = (meta.mode() & 0o7777) | mask;
    if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
        tracing::warn!(path = %path.display(), error = %e, "chmod for the pod's fsGroup failed");
    }
}

/// Walks `dir` without following symlinks, changing every entry, deepest first and the root last (upstream's
/// walkDeep): a reader that sees the root's setgid sees a finished volume.
fn walk_deep(dir: &Path, gid: u32, readonly: bool) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.is_dir() {
            walk_deep(&path, gid, readonly)?;
        } else {
            change_file_permission(&path, gid, readonly, &meta);
        }
    }
    let meta = std::fs::symlink_metadata(dir)?;
    change_file_permission(dir, gid, readonly, &meta);
    Ok(())
}

/// Upstream's SetVolumeOwnership: gives the volume at `dir` to the pod's fsGroup (see the module doc).
pub fn set_volume_ownership(dir: &Path, gid: u32, readonly: bool, policy: ChangePolicy) -> std::io::Result<()> {
    if policy == ChangePolicy::OnRootMismatch && !requires_permission_change(dir, gid, readonly) {
        tracing::debug!(path = %dir.display(), "skipping permission and ownership change for volume");
        return Ok(());
    }
    walk_deep(dir, gid, readonly)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stat(p: &Path) -> (u32, u32) {
        let m = std::fs::symlink_metadata(p).unwrap();
        (m.gid(), m.mode() & 0o7777)
    }

    fn set_mode(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// A writable volume (emptyDir): group rw on files, group rwx and setgid on directories; a read-only one
    /// (configMap, secret...): group read only, so a 0400 file becomes 0440 and a 0644 one stays. Symlinks change
    /// group, not their target's mode.
    #[test]
    fn groups_and_modes_as_upstream() {
        let dir = tempfile::tempdir().unwrap();
        let vol = dir.path().join("vol");
        std::fs::create_dir_all(vol.join("sub")).unwrap();
        set_mode(&vol, 0o777);
        set_mode(&vol.join("sub"), 0o700);
        std::fs::write(vol.join("sub/f"), b"x").unwrap();
        set_mode(&vol.join("sub/f"), 0o600);
        std::fs::write(vol.join("g"), b"y").unwrap();
        set_mode(&vol.join("g"), 0o644);
        std::os::unix::fs::symlink("g", vol.join("link")).unwrap();
        set_volume_ownership(&vol, 1234, false, ChangePolicy::Always).unwrap();
        assert_eq!(stat(&vol), (1234, 0o2777));
        assert_eq!(stat(&vol.join("sub")), (1234, 0o2770));
        assert_eq!(stat(&vol.join("sub/f")), (1234, 0o660));
        assert_eq!(stat(&vol.join("g")), (1234, 0o664));
        assert_eq!(stat(&vol.join("link")).0, 1234, "the symlink itself changes group");

        let ro = dir.path().join("ro");
        std::fs::create_dir_all(&ro).unwrap();
        set_mode(&ro, 0o755);
        for (name, mode) in [("a", 0o644), ("b", 0o400), ("c", 0o440)] {
            std::fs::write(ro.join(name), b"z").unwrap();
            set_mode(&ro.join(name), mode);
        }
        set_volume_ownership(&ro, 1234, true, ChangePolicy::Always).unwrap();
        assert_eq!(stat(&ro), (1234, 0o2755));
        assert_eq!(stat(&ro.join("a")), (1234, 0o644), "defaultMode kept");
        assert_eq!(stat(&ro.join("b")), (1234, 0o440));
        assert_eq!(stat(&ro.join("c")), (1234, 0o440));
    }

    /// OnRootMismatch walks only when the root does not match yet; Always walks every time.
    #[test]
    fn on_root_mismatch_skips_a_matching_root() {
        let dir = tempfile::tempdir().unwrap();
        let vol = dir.path().join("vol");
        std::fs::create_dir_all(&vol).unwrap();
        set_mode(&vol, 0o755);
        std::fs::write(vol.join("f"), b"x").unwrap();
        set_mode(&vol.join("f"), 0o600);
        assert!(requires_permission_change(&vol, 77, false));
        set_volume_ownership(&vol, 77, false, ChangePolicy::OnRootMismatch).unwrap();
        assert_eq!(stat(&vol), (77, 0o2775));
        assert!(!requires_permission_change(&vol, 77, false));
        // A file that lost its group: OnRootMismatch leaves it, Always fixes it.
        std::os::unix::fs::lchown(vol.join("f"), None, Some(0)).unwrap();
        set_volume_ownership(&vol, 77, false, ChangePolicy::OnRootMismatch).unwrap();
        assert_eq!(stat(&vol.join("f")).0, 0);
        set_volume_ownership(&vol, 77, false, ChangePolicy::Always).unwrap();
        assert_eq!(stat(&vol.join("f")).0, 77);
        assert!(requires_permission_change(&vol, 78, false), "another group");
        assert!(requires_permission_change(&vol.join("f"), 77, false), "not a directory");
        assert!(requires_permission_change(&dir.path().join("missing"), 77, false));
    }

    #[test]
    fn the_pods_fs_group() {
        assert_eq!(fs_group(&json!({"spec": {"securityContext": {"fsGroup": 2000}}})), Some(2000));
        assert_eq!(fs_group(&json!({"spec": {}})), None);
    }
}
