//! `whatsapp_cloud` (PROVIDERS.md §3).

use async_trait::async_trait;

use super::{Connector, Handoff, Outgoing};
use crate::domain::integration::WhatsappCloudConfig;

pub struct WhatsappCloud {
    config: WhatsappCloudConfig,
    access_token: String,
    app_secret: String,
    http: reqwest::Client,
}

impl WhatsappCloud {
    pub fn new(config: WhatsappCloudConfig, access_token: String, app_secret: String, http: reqwest::Client) -> WhatsappCloud {
        WhatsappCloud { config, access_token, app_secret, http }
    }
}

#[async_trait]
impl Connector for WhatsappCloud {
    async fn hand_off(&self, _attempt: &Outgoing<'_>) -> Handoff {
        let _ = (&self.config, &self.access_token, &self.app_secret, &self.http);
        Handoff::Unknown
    }
}
