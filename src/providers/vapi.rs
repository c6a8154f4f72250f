//! `vapi` (PROVIDERS.md §4; reference providers.md §3, §5). STUB: replaced by the connector.

use async_trait::async_trait;

use super::{Connector, Handoff, Outgoing};
use crate::domain::integration::VapiConfig;

pub struct Vapi {
    config: VapiConfig,
    api_key: String,
    server_secret: String,
    http: reqwest::Client,
}

impl Vapi {
    pub fn new(config: VapiConfig, api_key: String, server_secret: String, http: reqwest::Client) -> Vapi {
        Vapi { config, api_key, server_secret, http }
    }
}

#[async_trait]
impl Connector for Vapi {
    async fn hand_off(&self, _attempt: &Outgoing<'_>) -> Handoff {
        let _ = (&self.config, &self.api_key, &self.server_secret, &self.http);
        Handoff::Broken { reason: "vapi: not built yet".to_owned() }
    }
}
