//! `retell` (PROVIDERS.md §5; reference providers.md §4, §5). STUB: replaced by the connector.

use async_trait::async_trait;

use super::{Connector, Handoff, Outgoing};
use crate::domain::integration::RetellConfig;

pub struct Retell {
    config: RetellConfig,
    api_key: String,
    http: reqwest::Client,
}

impl Retell {
    pub fn new(config: RetellConfig, api_key: String, http: reqwest::Client) -> Retell {
        Retell { config, api_key, http }
    }
}

#[async_trait]
impl Connector for Retell {
    async fn hand_off(&self, _attempt: &Outgoing<'_>) -> Handoff {
        let _ = (&self.config, &self.api_key, &self.http);
        Handoff::Broken { reason: "retell: not built yet".to_owned() }
    }
}
