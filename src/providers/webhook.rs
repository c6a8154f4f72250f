//! `webhook` (§5.3): each attempt POSTed, signed, with the attempt id as `Idempotency-Key`, to a
//! bridge the customer runs. The bridge dedupes on that key, so a 5xx or a timeout is re-sent.

use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use super::{Connector, Handoff, Outgoing};
use crate::domain::campaign::Channel;
use crate::domain::ids::sign;
use crate::domain::integration::WebhookConfig;
use crate::store::DispatchContact;

/// Re-sends after a 5xx, a timeout or a connection error before the attempt fails (§5.3).
pub const MAX_RESENDS: i64 = 5;

pub struct Webhook {
    config: WebhookConfig,
    http: reqwest::Client,
}

impl Webhook {
    pub fn new(config: WebhookConfig, http: reqwest::Client) -> Webhook {
        Webhook { config, http }
    }
}

#[derive(Serialize)]
struct Named<'a, Id: Serialize> {
    id: Id,
    name: &'a str,
}

/// The body POSTed to a webhook provider.
#[derive(Serialize)]
struct WebhookAttempt<'a> {
    attempt_id: &'a str,
    channel: Channel,
    campaign: Named<'a, i64>,
    agent: Named<'a, String>,
    contact: &'a DispatchContact,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    template: Option<&'a str>,
    /// Also sent so a provider can tell a first send from a re-send of the same attempt.
    iteration: i64,
    callback_url: &'a str,
}

#[async_trait]
impl Connector for Webhook {
    /// The bridge receives the attempt id as `Idempotency-Key`.
    fn dedupes_attempts(&self) -> bool {
        true
    }

    async fn hand_off(&self, attempt: &Outgoing<'_>) -> Handoff {
        let campaign = attempt.campaign;
        let body = WebhookAttempt {
            attempt_id: attempt.attempt_id,
            channel: campaign.integration.channel,
            campaign: Named { id: campaign.id, name: &campaign.settings.name },
            agent: Named { id: campaign.agent.id.to_string(), name: &campaign.agent.name },
            contact: attempt.contact,
            first_message: campaign.settings.first_message.as_deref().filter(|_| campaign.integration.channel == Channel::PhoneCall),
            template: attempt.template,
            iteration: attempt.iteration,
            callback_url: attempt.callback_url,
        };
        let Ok(body) = serde_json::to_vec(&body) else { return Handoff::Failed { reason: "unserializable_attempt".to_owned() } };
        let Some(signature) = sign(attempt.signing_secret, &body) else {
            return Handoff::Failed { reason: "bad_integration_secret".to_owned() };
        };
        let sent = self
            .http
            .post(&self.config.url)
            .timeout(Duration::from_millis(u64::from(self.config.timeout_ms)))
            .header("content-type", "application/json")
            .header("idempotency-key", attempt.attempt_id)
            .header("x-outbound-signature", signature)
            .body(body)
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => Handoff::Accepted { provider_id: None },
            Ok(response) if response.status().is_client_error() => Handoff::Failed { reason: "provider_rejected".to_owned() },
            // The bridge dedupes on Idempotency-Key, so an unanswered send is safe to repeat.
            Ok(_) | Err(_) if attempt.tries >= MAX_RESENDS => Handoff::Failed { reason: "provider_unavailable".to_owned() },
            Ok(_) | Err(_) => Handoff::Retry { after: None },
        }
    }
}
