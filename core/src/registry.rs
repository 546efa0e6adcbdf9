//! Plug-ins by name: the engines and transports compiled into a binary.
//!
//! Each plug-in crate exports a `register(&mut Registry)` function that adds itself
//! under its `NAME` (the OpenDAL way: no link-time magic). The binary calls one
//! `register` per compiled-in plug-in, each behind its cargo feature, and then looks
//! plug-ins up by the name its configuration gives. A plug-in's configuration
//! section reaches it as a [`PluginConfig`], which it reads into its own serde
//! `Config` with [`parse_config`].

use std::path::Path;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::transport::{Identity, PeerTransport};

/// A plug-in's configuration section, as a tree of values (`Null` when absent).
pub type PluginConfig = serde_json::Value;

/// Opens an engine in a data directory with its configuration section.
pub type OpenEngine = fn(dir: &Path, config: &PluginConfig) -> Result<Arc<dyn Engine>>;

/// Starts a transport on a bound peer listener: this node's identity and its
/// configuration section. Runs on a tokio runtime.
pub type StartTransport = fn(
    listener: tokio::net::TcpListener,
    identity: Identity,
    config: &PluginConfig,
) -> Result<Arc<dyn PeerTransport>>;

/// The plug-ins a binary was built with.
#[derive(Default)]
pub struct Registry {
    engines: Vec<(&'static str, OpenEngine)>,
    transports: Vec<(&'static str, StartTransport)>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("engines", &self.engine_names())
            .field("transports", &self.transport_names())
            .finish()
    }
}

impl Registry {
    /// Adds an engine under `name` (a later registration of the same name wins).
    pub fn add_engine(&mut self, name: &'static str, open: OpenEngine) {
        self.engines.retain(|(n, _)| *n != name);
        self.engines.push((name, open));
    }

    /// Adds a transport under `name` (a later registration of the same name wins).
    pub fn add_transport(&mut self, name: &'static str, start: StartTransport) {
        self.transports.retain(|(n, _)| *n != name);
        self.transports.push((name, start));
    }

    /// The engine registered as `name`.
    pub fn engine(&self, name: &str) -> Option<OpenEngine> {
        self.engines.iter().find(|(n, _)| *n == name).map(|e| e.1)
    }

    /// The transport registered as `name`.
    pub fn transport(&self, name: &str) -> Option<StartTransport> {
        self.transports
            .iter()
            .find(|(n, _)| *n == name)
            .map(|t| t.1)
    }

    /// Registered engines, in registration order.
    pub fn engine_names(&self) -> Vec<&'static str> {
        self.engines.iter().map(|e| e.0).collect()
    }

    /// Registered transports, in registration order.
    pub fn transport_names(&self) -> Vec<&'static str> {
        self.transports.iter().map(|t| t.0).collect()
    }
}

/// Reads a plug-in's configuration section into its `Config` (its defaults when the
/// section is absent).
///
/// # Errors
/// [`Error::Config`] naming the section (`[engine_<name>]` or `[transport_<name>]`,
/// from `section`) and what serde refused (an unknown key, a wrong type).
pub fn parse_config<T: DeserializeOwned + Default>(
    section: &str,
    config: &PluginConfig,
) -> Result<T> {
    if config.is_null() {
        return Ok(T::default());
    }
    serde_json::from_value(config.clone())
        .map_err(|e| Error::Config(format!("config section [{section}]: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, PartialEq, serde::Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Tuning {
        size: u64,
    }

    #[test]
    fn config_sections_parse_strictly() {
        let t: Tuning = parse_config("engine_x", &PluginConfig::Null).unwrap();
        assert_eq!(t, Tuning::default());
        let t: Tuning = parse_config("engine_x", &serde_json::json!({"size": 3})).unwrap();
        assert_eq!(t.size, 3);
        let e = parse_config::<Tuning>("engine_x", &serde_json::json!({"sise": 3}));
        assert!(
            matches!(&e, Err(Error::Config(m)) if m.contains("[engine_x]") && m.contains("sise")),
            "{e:?}"
        );
    }

    #[test]
    fn lookups_by_name() {
        let mut r = Registry::default();
        r.add_engine("memory", |_, _| {
            Ok(Arc::new(crate::memory::MemoryEngine::new()))
        });
        assert!(r.engine("memory").is_some());
        assert!(r.engine("segment").is_none());
        assert_eq!(r.engine_names(), ["memory"]);
        assert!(r.transport_names().is_empty());
    }
}
