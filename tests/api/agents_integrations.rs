//! Agents and integrations (§1).
