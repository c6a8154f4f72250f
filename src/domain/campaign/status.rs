//! The statuses of campaigns and contacts, channels, and lifecycle actions, with the sets of
//! them that rules name (contract §2.9, §3.5).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    PhoneCall,
    Whatsapp,
}

impl Channel {
    pub const ALL: [Channel; 2] = [Channel::PhoneCall, Channel::Whatsapp];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::PhoneCall => "phone_call",
            Channel::Whatsapp => "whatsapp",
        }
    }

    pub fn parse(text: &str) -> Option<Channel> {
        match text {
            "phone_call" => Some(Channel::PhoneCall),
            "whatsapp" => Some(Channel::Whatsapp),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CampaignStatus {
    Pending,
    Ready,
    Active,
    Inactive,
    Cooldown,
    Finished,
}

impl CampaignStatus {
    pub const ALL: [CampaignStatus; 6] = [
        CampaignStatus::Pending,
        CampaignStatus::Ready,
        CampaignStatus::Active,
        CampaignStatus::Inactive,
        CampaignStatus::Cooldown,
        CampaignStatus::Finished,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CampaignStatus::Pending => "pending",
            CampaignStatus::Ready => "ready",
            CampaignStatus::Active => "active",
            CampaignStatus::Inactive => "inactive",
            CampaignStatus::Cooldown => "cooldown",
            CampaignStatus::Finished => "finished",
        }
    }

    pub fn parse(text: &str) -> Option<CampaignStatus> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// The statuses the engine runs a campaign in: dispatching, or waiting for its next cycle.
    pub const RUNNING: [CampaignStatus; 2] = [CampaignStatus::Active, CampaignStatus::Cooldown];

    /// Whether the engine starts attempts for a campaign in this status (§5): only while active,
    /// and never for an archived one.
    pub fn dispatches(self, archived: bool) -> bool {
        self == CampaignStatus::Active && !archived
    }

    /// Whether contacts may still be added (§3.1): a finished campaign takes no more.
    pub fn accepts_contacts(self) -> bool {
        self != CampaignStatus::Finished
    }

    /// The status once contacts were added (§2.9): a `pending` campaign becomes `ready`.
    pub fn with_contacts(self) -> CampaignStatus {
        match self {
            CampaignStatus::Pending => CampaignStatus::Ready,
            other => other,
        }
    }
}

/// Contact statuses (§3.5); campaigns name them in `cycles.filter_statuses`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ContactStatus {
    Queue,
    Sending,
    Sent,
    Delivered,
    Read,
    Accepted,
    Rejected,
    Voicemail,
    Answered,
    Failed,
    Retrying,
    Converted,
}

impl ContactStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ContactStatus::Queue => "queue",
            ContactStatus::Sending => "sending",
            ContactStatus::Sent => "sent",
            ContactStatus::Delivered => "delivered",
            ContactStatus::Read => "read",
            ContactStatus::Accepted => "accepted",
            ContactStatus::Rejected => "rejected",
            ContactStatus::Voicemail => "voicemail",
            ContactStatus::Answered => "answered",
            ContactStatus::Failed => "failed",
            ContactStatus::Retrying => "retrying",
            ContactStatus::Converted => "converted",
        }
    }

    pub const ALL: [ContactStatus; 12] = [
        ContactStatus::Queue,
        ContactStatus::Sending,
        ContactStatus::Sent,
        ContactStatus::Delivered,
        ContactStatus::Read,
        ContactStatus::Accepted,
        ContactStatus::Rejected,
        ContactStatus::Voicemail,
        ContactStatus::Answered,
        ContactStatus::Failed,
        ContactStatus::Retrying,
        ContactStatus::Converted,
    ];

    pub fn parse(text: &str) -> Option<ContactStatus> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// The contacts an iteration has yet to finish: waiting, in flight, or waiting to retry. The
    /// iteration ends when none is left (§5.5).
    pub const UNFINISHED: [ContactStatus; 3] = [ContactStatus::Queue, ContactStatus::Sending, ContactStatus::Retrying];

    /// The contacts waiting for their next attempt: queued, or retrying later.
    pub const WAITING: [ContactStatus; 2] = [ContactStatus::Queue, ContactStatus::Retrying];

    /// Contacts a new iteration never takes back (§5.5): converted, or still in flight.
    pub const KEPT_BY_NEW_ITERATIONS: [ContactStatus; 2] = [ContactStatus::Converted, ContactStatus::Sending];

    /// Only contacts not yet in flight nor done may be deleted (§3.4).
    pub fn is_deletable(self) -> bool {
        matches!(self, ContactStatus::Queue | ContactStatus::Failed)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CycleMode {
    Cooldown,
    Scheduled,
}

/// Lifecycle actions, in the order the contract lists them in `valid_targets`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LifecycleAction {
    Activate,
    Pause,
    Resume,
    Archive,
}

impl LifecycleAction {
    pub const ALL: [LifecycleAction; 4] =
        [LifecycleAction::Activate, LifecycleAction::Pause, LifecycleAction::Resume, LifecycleAction::Archive];

    pub fn parse(text: &str) -> Option<LifecycleAction> {
        Self::ALL.into_iter().find(|a| a.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LifecycleAction::Activate => "activate",
            LifecycleAction::Pause => "pause",
            LifecycleAction::Resume => "resume",
            LifecycleAction::Archive => "archive",
        }
    }
}
