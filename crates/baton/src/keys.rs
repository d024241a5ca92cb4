//! Where `baton serve` finds its master key, and how it is rotated.
//!
//! In order: `BATON_MASTER_KEY` (64 hex digits or base64), the config file's
//! `master_key_file`, or `DATA_DIR/master-key`, generated with mode 0600 on first start (with
//! a warning: a key beside the data protects only against someone who gets the database file
//! alone). The key it replaces during a rotation comes from `BATON_PREVIOUS_MASTER_KEY` or
//! `previous_master_key_file`.
//!
//! A key kept in a file is rotated without downtime: write the new key to the file and send
//! SIGHUP; baton re-wraps its data key with it and keeps serving.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use baton_storage::{Keyring, MasterKey, MasterKeys};

pub const ENV: &str = "BATON_MASTER_KEY";
pub const PREVIOUS_ENV: &str = "BATON_PREVIOUS_MASTER_KEY";

/// Where the master key was found.
#[derive(Debug, Clone)]
pub enum Source {
    Env,
    /// A file; `generated` when baton made it at this start.
    File {
        path: PathBuf,
        generated: bool,
    },
}

/// The master keys for a data directory, and where the current one came from.
pub fn load(
    data_dir: &Path,
    file: Option<&Path>,
    previous_file: Option<&Path>,
) -> anyhow::Result<(MasterKeys, Source)> {
    let previous = match (std::env::var(PREVIOUS_ENV).ok(), previous_file) {
        (Some(text), _) => Some(parse(&text, PREVIOUS_ENV)?),
        (None, Some(path)) => Some(read(path)?),
        (None, None) => None,
    };
    let (current, source) = if let Ok(text) = std::env::var(ENV) {
        (parse(&text, ENV)?, Source::Env)
    } else {
        let path = file.map_or_else(|| data_dir.join("master-key"), Path::to_owned);
        let generated = file.is_none() && !path.exists();
        if generated {
            // A store that exists already was sealed with a key that is not here: making a
            // new one would only leave a useless key file behind.
            anyhow::ensure!(
                !data_dir.join("baton.redb").exists(),
                "{} holds data but no master-key file: give its master key with {ENV} or \
                 master_key_file",
                data_dir.display()
            );
            generate(&path)?;
        }
        (read(&path)?, Source::File { path, generated })
    };
    Ok((MasterKeys { current, previous }, source))
}

fn parse(text: &str, what: &str) -> anyhow::Result<MasterKey> {
    MasterKey::from_text(text).with_context(|| format!("{what} is not a master key"))
}

fn read(path: &Path) -> anyhow::Result<MasterKey> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the master key file {}", path.display()))?,
    );
    MasterKey::from_text(&text)
        .with_context(|| format!("the master key file {} holds no master key", path.display()))
}

/// Writes a new key to `path`, readable by its owner only.
fn generate(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let key = MasterKey::generate()?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create the master key file {}", path.display()))?;
    file.write_all(format!("{}\n", key.to_text().as_str()).as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write the master key file {}", path.display()))
}

/// Reads the key file again and re-wraps the data key if the key changed.
pub fn rotate(keyring: &Keyring, source: &Source) {
    let Source::File { path, .. } = source else {
        tracing::info!("the master key comes from {ENV}: restart with the new key to rotate it");
        return;
    };
    let key = match read(path) {
        Ok(key) => key,
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "master key not rotated");
            return;
        }
    };
    let (old, new) = (keyring.master_id(), key.id());
    if old == new {
        tracing::debug!(master_key = %new, "master key unchanged");
        return;
    }
    match keyring.rewrap(&key) {
        Ok(()) => tracing::info!(from = %old, to = %new, "master key rotated"),
        Err(e) => tracing::warn!(error = %e, "master key not rotated"),
    }
}
