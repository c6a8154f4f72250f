//! The organization's do-not-contact list (contract §12.1): which entries suppress a number on a
//! channel, and where an entry came from.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::campaign::Channel;

/// The channel an entry suppresses: one of the campaign channels, or every channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DncChannel {
    PhoneCall,
    Whatsapp,
    All,
}

impl DncChannel {
    pub fn as_str(self) -> &'static str {
        match self {
            DncChannel::PhoneCall => "phone_call",
            DncChannel::Whatsapp => "whatsapp",
            DncChannel::All => "all",
        }
    }

    pub fn parse(text: &str) -> Option<DncChannel> {
        match text {
            "phone_call" => Some(DncChannel::PhoneCall),
            "whatsapp" => Some(DncChannel::Whatsapp),
            "all" => Some(DncChannel::All),
            _ => None,
        }
    }

    /// The stored channels whose entries suppress a number on `channel`: its own and `all`.
    pub fn suppressing(channel: Channel) -> [&'static str; 2] {
        [channel.as_str(), DncChannel::All.as_str()]
    }
}

impl From<Channel> for DncChannel {
    fn from(channel: Channel) -> Self {
        match channel {
            Channel::PhoneCall => DncChannel::PhoneCall,
            Channel::Whatsapp => DncChannel::Whatsapp,
        }
    }
}

/// Where a change to the list came from (`source` in the list and its history).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DncSource {
    Api,
    Dashboard,
    Csv,
    OptOutReply,
    Provider,
}

impl DncSource {
    pub fn as_str(self) -> &'static str {
        match self {
            DncSource::Api => "api",
            DncSource::Dashboard => "dashboard",
            DncSource::Csv => "csv",
            DncSource::OptOutReply => "opt_out_reply",
            DncSource::Provider => "provider",
        }
    }

    pub fn parse(text: &str) -> Option<DncSource> {
        [DncSource::Api, DncSource::Dashboard, DncSource::Csv, DncSource::OptOutReply, DncSource::Provider]
            .into_iter()
            .find(|source| source.as_str() == text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_is_suppressed_on_a_channel_by_its_own_entries_and_the_all_ones() {
        assert_eq!(DncChannel::suppressing(Channel::PhoneCall), ["phone_call", "all"]);
        assert_eq!(DncChannel::suppressing(Channel::Whatsapp), ["whatsapp", "all"]);
        for channel in [DncChannel::PhoneCall, DncChannel::Whatsapp, DncChannel::All] {
            assert_eq!(DncChannel::parse(channel.as_str()), Some(channel));
        }
        assert_eq!(DncChannel::parse("sms"), None);
        assert_eq!(DncSource::parse("opt_out_reply"), Some(DncSource::OptOutReply));
        assert_eq!(DncSource::parse("web"), None);
    }
}
