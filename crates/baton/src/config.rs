//! `baton serve` settings: flags over the config file over defaults.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use baton_api::CredentialRequest;
use serde::Deserialize;

use crate::cli::ServeArgs;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7171";
pub const DEFAULT_DATA_DIR: &str = "./baton-data";
/// How far the clocks of the nodes may disagree, unless configured.
pub const DEFAULT_MAX_CLOCK_SKEW: Duration = Duration::from_millis(500);
/// The largest `max_clock_skew` accepted: beyond it, short leases could not be held at all.
const MAX_MAX_CLOCK_SKEW: Duration = Duration::from_secs(60);

/// The config file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    /// `"500ms"`, `"1s"`: how far node clocks may disagree (part of the lease promise).
    max_clock_skew: Option<String>,
    /// Credentials applied at start, by name.
    #[serde(default)]
    credentials: BTreeMap<String, CredentialRequest>,
}

/// Validated settings of a server.
#[derive(Debug)]
pub struct ServeConfig {
    pub listen: String,
    pub data_dir: PathBuf,
    /// Lease holders are told to stop this much before their TTL ends.
    pub max_clock_skew: Duration,
    pub credentials: BTreeMap<String, CredentialRequest>,
}

impl ServeConfig {
    pub fn from_args(args: ServeArgs) -> anyhow::Result<ServeConfig> {
        let raw = match &args.config {
            Some(path) => read(path)?,
            None => RawConfig::default(),
        };
        let max_clock_skew = match args.max_clock_skew.or(raw.max_clock_skew) {
            Some(text) => parse_skew(&text)?,
            None => DEFAULT_MAX_CLOCK_SKEW,
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
            max_clock_skew,
            credentials: raw.credentials,
        })
    }
}

fn read(path: &Path) -> anyhow::Result<RawConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("the config file {} is invalid", path.display()))
}

fn parse_skew(text: &str) -> anyhow::Result<Duration> {
    let skew = humantime::parse_duration(text.trim())
        .with_context(|| format!("max_clock_skew: `{text}` is not a duration (e.g. \"500ms\")"))?;
    if skew > MAX_MAX_CLOCK_SKEW {
        anyhow::bail!(
            "max_clock_skew: {text} is more than {}",
            humantime::format_duration(MAX_MAX_CLOCK_SKEW)
        );
    }
    Ok(skew)
}
