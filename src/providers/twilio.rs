//! `twilio` (PROVIDERS.md §2).

use async_trait::async_trait;

use super::{Connector, Handoff, Outgoing};
use crate::domain::integration::TwilioConfig;

pub struct Twilio {
    config: TwilioConfig,
    auth_token: String,
    http: reqwest::Client,
}

impl Twilio {
    pub fn new(config: TwilioConfig, auth_token: String, http: reqwest::Client) -> Twilio {
        Twilio { config, auth_token, http }
    }
}

#[async_trait]
impl Connector for Twilio {
    async fn hand_off(&self, _attempt: &Outgoing<'_>) -> Handoff {
        let _ = (&self.config, &self.auth_token, &self.http);
        Handoff::Unknown
    }
}
