//! Where the key that seals provider credentials comes from (PROVIDERS.md §1):
//! `OUTBOUND_SECRET_KEY`, or on SQLite a key file beside the database, created (mode 0600) the
//! first time a credential is sealed. PostgreSQL deployments must set the variable, since their
//! processes share no disk.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::domain::credentials::{SECRET_KEY_VARIABLE, SecretKey};

#[derive(Debug, Default)]
pub struct Keyring {
    /// The key once known: given, read from the file, or created.
    key: OnceLock<SecretKey>,
    /// The key file beside the SQLite database; `None` on PostgreSQL (or with the variable set).
    file: Option<PathBuf>,
}

/// Why no credential can be sealed.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error(
        "{SECRET_KEY_VARIABLE} is not set: a PostgreSQL deployment must set it (base64 of 32 random bytes) to store provider credentials"
    )]
    Missing,
    #[error("cannot use the key file {path}: {error}")]
    File { path: String, error: String },
}

impl Keyring {
    /// The variable's key when set (an invalid one is an error at start-up, not at first use),
    /// else the key file beside the SQLite database at `sqlite_path`.
    pub fn new(variable: Option<&str>, sqlite_path: Option<&Path>) -> anyhow::Result<Keyring> {
        let keyring = Keyring { key: OnceLock::new(), file: None };
        if let Some(text) = variable.filter(|t| !t.trim().is_empty()) {
            let key = SecretKey::parse(text).ok_or_else(|| {
                anyhow::anyhow!("{SECRET_KEY_VARIABLE} must be the base64 of exactly 32 bytes (try: openssl rand -base64 32)")
            })?;
            let _ = keyring.key.set(key);
            return Ok(keyring);
        }
        Ok(Keyring { file: sqlite_path.map(key_file_beside), ..keyring })
    }

    /// A keyring holding `key` (tests, tools).
    pub fn with_key(key: SecretKey) -> Keyring {
        let keyring = Keyring::default();
        let _ = keyring.key.set(key);
        keyring
    }

    /// The key to seal with, creating the key file on first use.
    pub fn sealing_key(&self) -> Result<&SecretKey, KeyringError> {
        if let Some(key) = self.opening_key() {
            return Ok(key);
        }
        let path = self.file.as_ref().ok_or(KeyringError::Missing)?;
        let created = SecretKey::generate();
        write_key_file(path, &created)
            .map_err(|error| KeyringError::File { path: path.display().to_string(), error: error.to_string() })?;
        tracing::info!(path = %path.display(), "created the key file that seals provider credentials; keep it with the database");
        // Another thread may have created it meanwhile: whichever key the file holds wins.
        Ok(self.opening_key().unwrap_or_else(|| self.key.get_or_init(|| created)))
    }

    /// The key to open with; `None` while none exists.
    pub fn opening_key(&self) -> Option<&SecretKey> {
        if let Some(key) = self.key.get() {
            return Some(key);
        }
        let text = std::fs::read_to_string(self.file.as_ref()?).ok()?;
        let key = SecretKey::parse(&text)?;
        Some(self.key.get_or_init(|| key))
    }
}

/// `outbound.db` → `outbound.db.key`, in the same directory.
fn key_file_beside(database: &Path) -> PathBuf {
    let mut name = database.file_name().map(|n| n.to_os_string()).unwrap_or_else(|| "outbound.db".into());
    name.push(".key");
    database.with_file_name(name)
}

/// Writes a new key file readable by its owner only; never replaces an existing one.
fn write_key_file(path: &Path, key: &SecretKey) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut file) => file.write_all(format!("{}\n", key.to_base64()).as_bytes()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_is_created_once_beside_the_database_and_read_back() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let database = dir.path().join("o.db");
        let first = Keyring::new(None, Some(&database)).expect("keyring");
        assert!(first.opening_key().is_none());
        let key = first.sealing_key().expect("created").to_base64();
        let path = dir.path().join("o.db.key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).expect("exists").permissions().mode() & 0o777, 0o600);
        }
        let second = Keyring::new(None, Some(&database)).expect("keyring");
        assert_eq!(second.opening_key().map(SecretKey::to_base64), Some(key));
    }

    #[test]
    fn postgres_without_the_variable_cannot_seal_and_a_bad_variable_is_refused() {
        assert!(matches!(Keyring::new(None, None).expect("keyring").sealing_key(), Err(KeyringError::Missing)));
        assert!(Keyring::new(Some("short"), None).is_err());
        let key = SecretKey::generate();
        assert!(Keyring::new(Some(&key.to_base64()), None).expect("keyring").sealing_key().is_ok());
    }
}
