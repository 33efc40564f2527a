//! The data-dir lock (one data dir, one hub) and the data dir's own mode.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::error::{Error, ErrorKind, Result};

const LOCK_FILE: &str = "homehub.lock";

/// The advisory lock that keeps two hubs from sharing a data dir. Held for as long as
/// the value lives; the OS drops it when the process dies, so a crash never leaves it.
pub struct DirLock {
    _file: File,
}

impl DirLock {
    pub fn acquire(data_dir: &Path) -> Result<DirLock> {
        let path = data_dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::internal(format!("opening {}: {e}", path.display())))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let holder = fs::read_to_string(&path).unwrap_or_default();
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!("data dir {} is in use by another homehub (pid {})", data_dir.display(), holder.trim()),
                ));
            }
            Err(fs::TryLockError::Error(e)) => return Err(Error::internal(format!("locking {}: {e}", path.display()))),
        }
        file.set_len(0)
            .and_then(|_| write!(file, "{}", std::process::id()))
            .map_err(|e| Error::internal(format!("writing {}: {e}", path.display())))?;
        Ok(DirLock { _file: file })
    }

    /// The pid written by the hub that holds the lock, if one does now.
    pub fn holder(data_dir: &Path) -> Option<u32> {
        let path = data_dir.join(LOCK_FILE);
        let file = File::open(&path).ok()?;
        if file.try_lock_shared().is_ok() {
            return None; // nobody holds it
        }
        fs::read_to_string(&path).ok()?.trim().parse().ok()
    }
}

/// Makes the data dir (0700) if needed and tightens it if it exists.
pub fn prepare_data_dir(data_dir: &Path) -> Result<()> {
    fs::create_dir_all(data_dir).map_err(|e| Error::internal(format!("creating data dir {}: {e}", data_dir.display())))?;
    fs::set_permissions(data_dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::internal(format!("chmod 0700 {}: {e}", data_dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _a = DirLock::acquire(dir.path()).unwrap();
        let e = DirLock::acquire(dir.path()).err().expect("second lock must fail");
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert!(e.to_string().contains("in use"));
    }
}
