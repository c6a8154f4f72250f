//! GET /campaigns (§2.4).
