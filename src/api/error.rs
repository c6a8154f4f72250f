//! The one error envelope of contract §0.1, for every error of every endpoint.

use std::panic::Location;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::campaign::{CampaignError, CampaignStatus, LifecycleAction, LifecycleError};
use crate::domain::validation::Violation;
use crate::store::{Refusal, StoreError};

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorDetail {
    pub field: String,
    pub message: String,
}

/// `{ "success": false, "error": KEY, "message": …, "field": …, "details": … }`, plus
/// `current_status` and `valid_targets` on lifecycle conflicts.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    pub success: bool,
    #[schema(example = "INVALID_REQUEST")]
    pub error: &'static str,
    pub message: String,
    pub field: Option<String>,
    pub details: Option<Vec<ErrorDetail>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_status: Option<CampaignStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_targets: Option<Vec<LifecycleAction>>,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    /// Boxed: errors travel in every `Result` of the API layer, which should stay small.
    pub body: Box<ErrorBody>,
}

impl ApiError {
    pub fn new(status: StatusCode, error: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            body: Box::new(ErrorBody {
                success: false,
                error,
                message: message.into(),
                field: None,
                details: None,
                current_status: None,
                valid_targets: None,
            }),
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.body.field = Some(field.into());
        self
    }

    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", message).with_field(field)
    }

    /// `INVALID_REQUEST` naming the first violation, with `details` when there are several.
    pub fn violations(mut list: Vec<Violation>) -> Self {
        if list.is_empty() {
            list.push(Violation::new("", "invalid request"));
        }
        let first = &list[0];
        let mut error = Self::invalid(first.field.clone(), first.message.clone());
        if first.field.is_empty() {
            error.body.field = None;
        }
        if list.len() > 1 {
            error.body.details = Some(list.into_iter().map(|v| ErrorDetail { field: v.field, message: v.message }).collect());
        }
        error
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "missing, malformed, unknown or revoked API key: send Authorization: api-key <KEY>",
        )
    }

    /// `409 IDEMPOTENCY_KEY_IN_USE`; its response carries `Retry-After: 1` and the [`KeyInUse`]
    /// marker, by which the Idempotency-Key layer answers a repeat with the stored response.
    pub fn key_in_use() -> Self {
        Self::new(StatusCode::CONFLICT, KEY_IN_USE, "a request with this Idempotency-Key is still being processed; retry shortly")
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", format!("{what} not found"))
    }

    /// A failure that is not the client's: logged with where it came from, never shown.
    #[track_caller]
    pub fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, location = %Location::caller(), "request failed");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "SERVER_ERROR", "the server could not complete the request; it is safe to retry")
    }
}

impl From<StoreError> for ApiError {
    #[track_caller]
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::IdempotencyKeyTaken => ApiError::key_in_use(),
            err => ApiError::internal(err),
        }
    }
}

impl From<CampaignError> for ApiError {
    fn from(err: CampaignError) -> Self {
        match err {
            CampaignError::Invalid(list) => ApiError::violations(list),
            CampaignError::ImmutableField(field) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "IMMUTABLE_FIELD",
                format!("{field} cannot be changed after the campaign is created"),
            )
            .with_field(field),
            CampaignError::CyclesNotEnabled(field) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "CYCLES_NOT_ENABLED",
                format!("{field} cannot be set: this campaign was created without cycles"),
            )
            .with_field(field),
            CampaignError::ScheduledModeOnly(field) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "SCHEDULED_MODE_ONLY",
                format!("{field} is only allowed when cycles.mode is scheduled"),
            )
            .with_field(field),
            CampaignError::Finished => {
                ApiError::new(StatusCode::CONFLICT, "CAMPAIGN_FINISHED", "the campaign is finished and can no longer change")
            }
        }
    }
}

impl From<LifecycleError> for ApiError {
    fn from(err: LifecycleError) -> Self {
        match err {
            LifecycleError::InvalidTransition { current, valid_targets } => {
                let names: Vec<&str> = valid_targets.iter().map(|a| a.as_str()).collect();
                let mut error = ApiError::new(
                    StatusCode::CONFLICT,
                    "INVALID_STATUS_TRANSITION",
                    format!("this action is not allowed while the campaign is {}; allowed now: {}", current.as_str(), names.join(", ")),
                );
                error.body.current_status = Some(current);
                error.body.valid_targets = Some(valid_targets);
                error
            }
            LifecycleError::MissingTemplate => {
                ApiError::invalid("template", "a WhatsApp campaign needs a template before it can be activated")
            }
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Campaign(err) => err.into(),
            Refusal::Lifecycle(err) => err.into(),
        }
    }
}

impl ApiError {
    pub fn into_reply(self) -> crate::api::idempotency::Reply {
        crate::api::idempotency::Reply::json(self.status, &*self.body)
    }
}

const KEY_IN_USE: &str = "IDEMPOTENCY_KEY_IN_USE";

/// Marks the response of [`ApiError::key_in_use`].
#[derive(Clone, Copy)]
pub struct KeyInUse;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let in_use = self.body.error == KEY_IN_USE;
        let mut response = (self.status, axum::Json(*self.body)).into_response();
        if in_use {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            response.extensions_mut().insert(KeyInUse);
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
