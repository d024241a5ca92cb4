//! `baton serve` settings: flags over the config file over defaults.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use baton_api::CredentialRequest;
use serde::Deserialize;

use crate::cli::ServeArgs;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7171";
pub const DEFAULT_DATA_DIR: &str = "./baton-data";

/// The config file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    /// Credentials applied at start, by name.
    #[serde(default)]
    credentials: BTreeMap<String, CredentialRequest>,
}

/// Validated settings of a server.
#[derive(Debug)]
pub struct ServeConfig {
    pub listen: String,
    pub data_dir: PathBuf,
    pub credentials: BTreeMap<String, CredentialRequest>,
}

impl ServeConfig {
    pub fn from_args(args: ServeArgs) -> anyhow::Result<ServeConfig> {
        let raw = match &args.config {
            Some(path) => read(path)?,
            None => RawConfig::default(),
        };
        Ok(ServeConfig {
            listen: args
                .listen
                .or(raw.listen)
                .unwrap_or_else(|| DEFAULT_LISTEN.to_owned()),
            data_dir: args
                .data_dir
                .or(raw.data_dir)
                .unwrap_or_else(|| DEFAULT_DATA_DIR.into()),
            credentials: raw.credentials,
        })
    }
}

fn read(path: &Path) -> anyhow::Result<RawConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("the config file {} is invalid", path.display()))
}
