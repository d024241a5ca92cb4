//! `baton serve` settings: flags over the config file over defaults.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use baton_api::CredentialRequest;
use baton_core::Secs;
use baton_engine::EngineConfig;
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
    #[serde(default)]
    rotation: RawRotation,
}

/// `[rotation]`: how the rotation engine paces issuer calls.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRotation {
    /// How long an open intent holds off other rotations of its credential; an issuer call
    /// whose outcome is unknown is retried only after it.
    intent_timeout: Option<Secs>,
    /// The first retry delay after a failed issuer call; doubled per failure, with jitter.
    backoff_base: Option<Secs>,
    /// The longest retry delay.
    backoff_max: Option<Secs>,
    /// The shortest time between two calls to one credential's oauth2 or exec issuer.
    min_interval: Option<Secs>,
}

impl RawRotation {
    fn engine_config(&self) -> anyhow::Result<EngineConfig> {
        let defaults = EngineConfig::default();
        let pick = |v: Option<Secs>, d| v.map_or(d, Secs::as_std);
        let config = EngineConfig {
            intent_timeout: pick(self.intent_timeout, defaults.intent_timeout),
            backoff_base: pick(self.backoff_base, defaults.backoff_base),
            backoff_max: pick(self.backoff_max, defaults.backoff_max),
            min_interval: pick(self.min_interval, defaults.min_interval),
        };
        anyhow::ensure!(
            !config.intent_timeout.is_zero(),
            "rotation.intent_timeout must be at least 1s"
        );
        anyhow::ensure!(
            config.backoff_base <= config.backoff_max,
            "rotation.backoff_base must not exceed rotation.backoff_max"
        );
        Ok(config)
    }
}

/// Validated settings of a server.
#[derive(Debug)]
pub struct ServeConfig {
    pub listen: String,
    pub data_dir: PathBuf,
    pub credentials: BTreeMap<String, CredentialRequest>,
    pub engine: EngineConfig,
}

impl ServeConfig {
    pub fn from_args(args: ServeArgs) -> anyhow::Result<ServeConfig> {
        let raw = match &args.config {
            Some(path) => read(path)?,
            None => RawConfig::default(),
        };
        let engine = raw
            .rotation
            .engine_config()
            .context("the config file's [rotation] settings are invalid")?;
        Ok(ServeConfig {
            engine,
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
