//! Campaign analytics (§5.7): counts kept by the store, rates derived here.

use serde::Serialize;
use utoipa::ToSchema;

use super::campaign::{Channel, ContactStatus};

/// Counters a campaign's analytics are computed from. Kept current by the store as contacts and
/// attempts change, so reading them never scans contacts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CampaignCounters {
    pub contacts: i64,
    pub calls: i64,
    pub calls_human: i64,
    pub calls_machine: i64,
    pub calls_unknown: i64,
    pub contacts_processed: i64,
    pub contacts_failed: i64,
    pub contacts_voicemail: i64,
    pub contacts_answered: i64,
    pub contacts_converted: i64,
    pub messages: i64,
    pub sent: i64,
    pub delivered: i64,
    pub read: i64,
    pub accepted: i64,
    pub rejected: i64,
    pub failed: i64,
}

impl CampaignCounters {
    /// Fills the counts that follow from contacts' current statuses. WhatsApp counts are a funnel:
    /// a contact that has read a message was also sent and delivered it.
    pub fn set_status_counts(&mut self, count: impl Fn(ContactStatus) -> i64) {
        use ContactStatus::*;
        let sum = |statuses: &[ContactStatus]| statuses.iter().map(|s| count(*s)).sum::<i64>();
        self.contacts_failed = count(Failed);
        self.contacts_voicemail = count(Voicemail);
        self.contacts_converted = count(Converted);
        self.accepted = sum(&[Accepted, Converted]);
        self.rejected = count(Rejected);
        self.read = self.accepted + sum(&[Read, Rejected]);
        self.delivered = self.read + count(Delivered);
        self.sent = self.delivered + count(Sent);
        self.failed = count(Failed);
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PhoneAnalytics {
    pub contacts: i64,
    pub calls: i64,
    pub calls_answered_by_human: i64,
    pub calls_answered_by_human_rate: f64,
    pub calls_answered_by_machine: i64,
    pub calls_answered_by_machine_rate: f64,
    pub calls_answered_by_unknown: i64,
    pub calls_answered_by_unknown_rate: f64,
    pub contacts_processed: i64,
    pub contacts_processed_rate: f64,
    pub contacts_failed: i64,
    pub contacts_failed_rate: f64,
    pub contacts_voicemail: i64,
    pub contacts_voicemail_rate: f64,
    pub contacts_answered: i64,
    pub contacts_answered_rate: f64,
    pub contacts_converted: i64,
    pub contacts_converted_rate: f64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WhatsappAnalytics {
    pub contacts: i64,
    pub messages: i64,
    pub sent: i64,
    pub delivered: i64,
    pub read: i64,
    pub accepted: i64,
    pub rejected: i64,
    pub failed: i64,
    pub converted: i64,
    pub sent_rate: f64,
    pub delivered_rate: f64,
    pub read_rate: f64,
    pub accepted_rate: f64,
    pub rejected_rate: f64,
    pub failed_rate: f64,
    pub converted_rate: f64,
}

/// The `analytics` object; its shape follows the campaign's channel.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub enum Analytics {
    PhoneCall(PhoneAnalytics),
    Whatsapp(WhatsappAnalytics),
}

/// `count / total` in 0–1, rounded to 4 decimals; 0 when `total` is 0.
pub fn rate(count: i64, total: i64) -> f64 {
    if total <= 0 { 0.0 } else { (count as f64 / total as f64 * 10_000.0).round() / 10_000.0 }
}

impl Analytics {
    pub fn from_counters(channel: Channel, c: &CampaignCounters) -> Analytics {
        match channel {
            Channel::PhoneCall => Analytics::PhoneCall(PhoneAnalytics {
                contacts: c.contacts,
                calls: c.calls,
                calls_answered_by_human: c.calls_human,
                calls_answered_by_human_rate: rate(c.calls_human, c.calls),
                calls_answered_by_machine: c.calls_machine,
                calls_answered_by_machine_rate: rate(c.calls_machine, c.calls),
                calls_answered_by_unknown: c.calls_unknown,
                calls_answered_by_unknown_rate: rate(c.calls_unknown, c.calls),
                contacts_processed: c.contacts_processed,
                contacts_processed_rate: rate(c.contacts_processed, c.contacts),
                contacts_failed: c.contacts_failed,
                contacts_failed_rate: rate(c.contacts_failed, c.contacts),
                contacts_voicemail: c.contacts_voicemail,
                contacts_voicemail_rate: rate(c.contacts_voicemail, c.contacts),
                contacts_answered: c.contacts_answered,
                contacts_answered_rate: rate(c.contacts_answered, c.contacts),
                contacts_converted: c.contacts_converted,
                contacts_converted_rate: rate(c.contacts_converted, c.contacts),
            }),
            Channel::Whatsapp => Analytics::Whatsapp(WhatsappAnalytics {
                contacts: c.contacts,
                messages: c.messages,
                sent: c.sent,
                delivered: c.delivered,
                read: c.read,
                accepted: c.accepted,
                rejected: c.rejected,
                failed: c.failed,
                converted: c.contacts_converted,
                sent_rate: rate(c.sent, c.contacts),
                delivered_rate: rate(c.delivered, c.contacts),
                read_rate: rate(c.read, c.contacts),
                accepted_rate: rate(c.accepted, c.contacts),
                rejected_rate: rate(c.rejected, c.contacts),
                failed_rate: rate(c.failed, c.contacts),
                converted_rate: rate(c.contacts_converted, c.contacts),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_round_to_four_decimals_and_guard_zero() {
        assert_eq!(rate(1, 3), 0.3333);
        assert_eq!(rate(2, 3), 0.6667);
        assert_eq!(rate(5, 0), 0.0);
        assert_eq!(rate(7, 7), 1.0);
    }
}
