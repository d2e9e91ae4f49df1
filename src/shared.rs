//! What every thread can see: the config in force (swapped whole on SIGHUP) and the
//! process-wide counters. Workers keep their own copy of the config pointer for the hot
//! path and are told of a swap by message; the admin endpoint reads it here. The access
//! log's queue to its writer thread lives here too.

use std::sync::{Arc, RwLock};
use std::time::Instant;

use crate::access_queue::AccessQueue;
use crate::config::Config;
use crate::metrics::Metrics;

pub struct Shared {
    config: RwLock<Arc<Config>>,
    pub metrics: Metrics,
    pub access_log: AccessQueue,
    pub started: Instant,
}

impl Shared {
    pub fn new(config: Arc<Config>) -> Arc<Self> {
        let metrics = Metrics::default();
        let access_log = AccessQueue::new(Arc::clone(&metrics.access_log_dropped));
        Arc::new(Self { config: RwLock::new(config), metrics, access_log, started: Instant::now() })
    }

    pub fn config(&self) -> Arc<Config> {
        Arc::clone(&self.config.read().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn set_config(&self, config: Arc<Config>) {
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = config;
    }
}
