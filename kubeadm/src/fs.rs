//! The filesystem kubeadm writes through: [`HostFs`] under a root directory (`/` in production, a temp dir in
//! tests via `--rootfs`), and [`MemFs`], a recording fake that unit tests compare against golden files.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// File operations on absolute paths (`/etc/kubernetes/pki/ca.crt`); implementations decide where they land.
pub trait Fs: Send + Sync {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Writes a file (creating its parent directories) with the given permission bits.
    fn write(&self, path: &Path, data: &[u8], mode: u32) -> io::Result<()>;
    fn exists(&self, path: &Path) -> bool;
    /// Removes a file; a missing one is not an error.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Removes a directory and everything in it; a missing one is not an error.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// The names of the entries of a directory (empty when it does not exist), sorted.
    fn list(&self, path: &Path) -> io::Result<Vec<String>>;
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Where an absolute path lands on the host (for tools that need a real path).
    fn host_path(&self, path: &Path) -> PathBuf;

    fn read_string(&self, path: &Path) -> io::Result<String> {
        String::from_utf8(self.read(path)?).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

/// The host's filesystem under `root`.
#[derive(Clone, Debug)]
pub struct HostFs {
    pub root: PathBuf,
}

impl HostFs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        HostFs { root: root.into() }
    }
}

impl Fs for HostFs {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(self.host_path(path))
    }

    fn write(&self, path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let p = self.host_path(path);
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir)?;
        }
        // Written aside then renamed, so a kubelet watching the manifest directory never reads half a file.
        let tmp = p.with_extension(format!("kubeadm-tmp-{}", std::process::id()));
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
        std::fs::rename(&tmp, &p)
    }

    fn exists(&self, path: &Path) -> bool {
        self.host_path(path).exists()
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        match std::fs::remove_file(self.host_path(path)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r,
        }
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        match std::fs::remove_dir_all(self.host_path(path)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r,
        }
    }

    fn list(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        match std::fs::read_dir(self.host_path(path)) {
            Ok(rd) => {
                for e in rd {
                    names.push(e?.file_name().to_string_lossy().into_owned());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        names.sort();
        Ok(names)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(self.host_path(path))
    }

    fn host_path(&self, path: &Path) -> PathBuf {
        match path.strip_prefix("/") {
            Ok(rel) => self.root.join(rel),
            Err(_) => path.to_path_buf(),
        }
    }
}

/// An in-memory filesystem recording every file and its mode.
#[derive(Debug, Default)]
pub struct MemFs {
    files: Mutex<BTreeMap<PathBuf, (Vec<u8>, u32)>>,
    dirs: Mutex<std::collections::BTreeSet<PathBuf>>,
}

impl MemFs {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every file path, sorted.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.files.lock().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect()
    }

    /// The permission bits a file was written with.
    pub fn mode(&self, path: &Path) -> Option<u32> {
        self.files.lock().unwrap_or_else(|e| e.into_inner()).get(path).map(|f| f.1)
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("open {}: no such file or directory", path.display()))
}

impl Fs for MemFs {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(path)
            .map(|f| f.0.clone())
            .ok_or_else(|| not_found(path))
    }

    fn write(&self, path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
        self.files.lock().unwrap_or_else(|e| e.into_inner()).insert(path.to_path_buf(), (data.to_vec(), mode));
        Ok(())
    }

    fn exists(&self, path: &Path) -> bool {
        let files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        files.contains_key(path)
            || files.keys().any(|p| p.starts_with(path))
            || self.dirs.lock().unwrap_or_else(|e| e.into_inner()).contains(path)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.files.lock().unwrap_or_else(|e| e.into_inner()).remove(path);
        Ok(())
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.files.lock().unwrap_or_else(|e| e.into_inner()).retain(|p, _| !p.starts_with(path));
        self.dirs.lock().unwrap_or_else(|e| e.into_inner()).retain(|p| !p.starts_with(path));
        Ok(())
    }

    fn list(&self, path: &Path) -> io::Result<Vec<String>> {
        let files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        let mut names: Vec<String> = files
            .keys()
            .filter_map(|p| p.strip_prefix(path).ok())
            .filter_map(|rel| rel.components().next())
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.dirs.lock().unwrap_or_else(|e| e.into_inner()).insert(path.to_path_buf());
        Ok(())
    }

    fn host_path(&self, path: &Path) -> PathBuf {
        path.to_path_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_fs_maps_absolute_paths_under_its_root() {
        let dir = tempfile::tempdir().unwrap();
        let fs = HostFs::new(dir.path());
        fs.write(Path::new("/etc/kubernetes/pki/ca.key"), b"k", 0o600).unwrap();
        let real = dir.path().join("etc/kubernetes/pki/ca.key");
        assert_eq!(std::fs::read(&real).unwrap(), b"k");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&real).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(fs.list(Path::new("/etc/kubernetes")).unwrap(), vec!["pki".to_string()]);
        fs.remove_dir_all(Path::new("/etc/kubernetes")).unwrap();
        assert!(!fs.exists(Path::new("/etc/kubernetes/pki/ca.key")));
    }

    #[test]
    fn mem_fs_lists_direct_children() {
        let fs = MemFs::new();
        fs.write(Path::new("/a/b/c"), b"1", 0o644).unwrap();
        fs.write(Path::new("/a/d"), b"2", 0o600).unwrap();
        assert_eq!(fs.list(Path::new("/a")).unwrap(), vec!["b", "d"]);
        assert_eq!(fs.mode(Path::new("/a/d")), Some(0o600));
        assert!(fs.exists(Path::new("/a/b")));
    }
}
