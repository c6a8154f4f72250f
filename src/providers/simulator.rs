//! `simulator` (§5.3): outcomes drawn in-process from the attempt id, entering through the same
//! event path as a real provider's.

use async_trait::async_trait;
use jiff::Timestamp;

use super::{Connector, Handoff, Outgoing};
use crate::domain::attempt::simulate;
use crate::domain::integration::SimulatorConfig;

pub struct Simulator {
    config: SimulatorConfig,
}

impl Simulator {
    pub fn new(config: SimulatorConfig) -> Simulator {
        Simulator { config }
    }
}

#[async_trait]
impl Connector for Simulator {
    /// Its outcome is a function of the attempt id: a repeat reports the same.
    fn dedupes_attempts(&self) -> bool {
        true
    }

    async fn hand_off(&self, attempt: &Outgoing<'_>) -> Handoff {
        if self.config.latency_ms > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(u64::from(self.config.latency_ms))).await;
        }
        Handoff::Settled(simulate(attempt.attempt_id, attempt.campaign.integration.channel, &self.config, Timestamp::now()))
    }
}
