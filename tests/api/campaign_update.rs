//! PATCH /campaigns/{id} (§2.7).
