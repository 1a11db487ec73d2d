//! Typed settings, layered: defaults → `leadgate.toml` (or `--config FILE`) → `LEADGATE_*`
//! environment variables → command-line flags. Checked before anything binds or connects, with
//! messages that name the setting. Secrets are `SecretString` and never printed.

use crate::auth::{AuthConfig, PublicKeyConfig};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Every setting, with its default. The TOML file uses these names.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address the HTTP server listens on.
    pub listen: SocketAddr,
    /// `sqlite://FILE` (created when missing) or `postgres://…`.
    pub database_url: String,
    /// Maximum database connections per process.
    pub database_max_connections: u32,
    /// HS256 signing secret for bearer tokens, at least 32 bytes. When unset, a secret that
    /// `serve --demo` generated and stored in the database is used.
    #[serde(skip_serializing)]
    pub jwt_secret: Option<SecretString>,
    /// RS256/ES256 public keys, selected by the token's `kid`.
    pub jwt_public_keys: Vec<PublicKeyConfig>,
    /// The `iss` tokens must carry.
    pub jwt_issuer: String,
    /// The `aud` tokens must carry.
    pub jwt_audience: String,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Largest GraphQL batch (JSON array of requests).
    pub max_batch: usize,
    /// Maximum query depth.
    pub max_depth: usize,
    /// Maximum query complexity.
    pub max_complexity: usize,
    /// Maximum aliased fields per document.
    pub max_aliases: usize,
    /// Seconds a request may take before it is answered with 408.
    pub request_timeout_secs: u64,
    /// Log filter, e.g. `info` or `leadgate=debug,info`.
    pub log: String,
    /// `text` or `json`.
    pub log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: "sqlite://leadgate.db".into(),
            database_max_connections: 16,
            jwt_secret: None,
            jwt_public_keys: Vec::new(),
            jwt_issuer: "leadgate".into(),
            jwt_audience: "leadgate".into(),
            max_body_bytes: 2 * 1024 * 1024,
            max_batch: 10,
            max_depth: 15,
            max_complexity: 20_000,
            max_aliases: 30,
            request_timeout_secs: 30,
            log: "info".into(),
            log_format: LogFormat::Text,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("setting `{setting}`: {message}")]
    Invalid { setting: &'static str, message: String },
}

/// The file read when `--config` is not given, if it exists.
pub const DEFAULT_FILE: &str = "leadgate.toml";

impl Settings {
    /// Defaults overlaid with the config file: the explicit one (which must exist) or
    /// `leadgate.toml` in the working directory when present.
    pub fn load(explicit: Option<&Path>) -> Result<Self, ConfigError> {
        let path = match explicit {
            Some(p) => Some(p.to_path_buf()),
            None => Some(PathBuf::from(DEFAULT_FILE)).filter(|p| p.exists()),
        };
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path,
            message: e.message().to_owned(),
        })
    }

    /// Checks values that types alone do not.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |setting, message: &str| {
            Err(ConfigError::Invalid {
                setting,
                message: message.to_owned(),
            })
        };
        let url = &self.database_url;
        if !(url.starts_with("sqlite:") || url.starts_with("postgres:") || url.starts_with("postgresql:")) {
            return invalid("database_url", "must start with sqlite:// or postgres://");
        }
        if self.database_max_connections == 0 {
            return invalid("database_max_connections", "must be at least 1");
        }
        if self.max_body_bytes < 1024 {
            return invalid("max_body_bytes", "must be at least 1024");
        }
        if self.max_batch == 0 {
            return invalid("max_batch", "must be at least 1");
        }
        if self.max_depth < 13 {
            return invalid(
                "max_depth",
                "must be at least 13, or the introspection query fails",
            );
        }
        if self.request_timeout_secs == 0 {
            return invalid("request_timeout_secs", "must be at least 1");
        }
        if self.jwt_issuer.trim().is_empty() || self.jwt_audience.trim().is_empty() {
            return invalid("jwt_issuer", "issuer and audience must not be blank");
        }
        Ok(())
    }

    /// The authentication settings, with the HS256 secret resolved by the caller.
    pub fn auth_config(&self, hs256_secret: Option<SecretString>) -> AuthConfig {
        AuthConfig {
            hs256_secret,
            public_keys: self.jwt_public_keys.clone(),
            issuer: self.jwt_issuer.clone(),
            audience: self.jwt_audience.clone(),
            leeway_secs: 30,
        }
    }

    /// The default settings as TOML, for `leadgate.example.toml`.
    pub fn default_toml() -> String {
        toml::to_string(&Self::default()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Settings::default().validate().unwrap();
    }

    #[test]
    fn unknown_keys_in_the_file_are_rejected() {
        let err = toml::from_str::<Settings>("lisen = \"0.0.0.0:1\"").unwrap_err();
        assert!(err.message().contains("lisen"));
    }

    #[test]
    fn bad_database_url_names_the_setting() {
        let s = Settings {
            database_url: "mysql://x".into(),
            ..Settings::default()
        };
        assert!(s.validate().unwrap_err().to_string().contains("database_url"));
    }
}
