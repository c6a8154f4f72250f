//! Outbound's own OpenAPI document (§0.3), generated from the handlers' annotations: the answers
//! every operation shares (authentication, rate limit, bodies, Idempotency-Key) are added here,
//! once, instead of on each handler.

use utoipa::OpenApi;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::{Content, HttpMethod, Ref, RefOr};

use super::error;

#[derive(OpenApi)]
#[openapi(
    info(title = "Outbound API", version = "1.0", description = "Outbound campaigns API, compatible with Altur's public campaigns API."),
    servers((url = "/api/v1.0")),
    modifiers(&ApiKeyAuth),
    security(("api_key" = [])),
    components(schemas(error::ErrorBody)),
)]
pub(super) struct ApiDoc;

struct ApiKeyAuth;

impl utoipa::Modify for ApiKeyAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description("Authorization", "api-key YOUR_API_KEY"))),
        );
    }
}

/// Adds the answers that layers give, not handlers: 401 and 429 on every operation that takes
/// an API key, 413 and 415 on those with a body, 409 and 422 on POSTs (Idempotency-Key, §7),
/// and 400 everywhere (a bad path id, query parameter or header). Applied once every route's
/// operations are in the document.
pub(super) struct SharedAnswers;

impl utoipa::Modify for SharedAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                (HttpMethod::Get, item.get.as_mut()),
                (HttpMethod::Post, item.post.as_mut()),
                (HttpMethod::Patch, item.patch.as_mut()),
                (HttpMethod::Delete, item.delete.as_mut()),
            ];
            for (method, operation) in operations {
                if let Some(operation) = operation {
                    add_shared_answers(method, operation);
                }
            }
        }
    }
}

fn add_shared_answers(method: HttpMethod, operation: &mut Operation) {
    // Provider events opt out of the API key with an empty requirement (`security(())`).
    let keyed = operation.security.as_ref().is_none_or(|requirements| requirements.iter().all(|r| *r != Default::default()));
    let mut answers = vec![("400", "Invalid request: a bad path id, query parameter, header or body")];
    if keyed {
        answers.push(("401", "Missing, malformed, unknown or revoked API key"));
        answers.push(("429", "Over the per-key rate limit; see Retry-After and RateLimit"));
    }
    if operation.request_body.is_some() {
        answers.push(("413", "Body over 5 MiB"));
        answers.push(("415", "Body without Content-Type: application/json"));
    }
    if keyed && method == HttpMethod::Post {
        answers.push(("409", "A request with the same Idempotency-Key is still being processed"));
        answers.push(("422", "Idempotency-Key reused with a different request"));
    }
    for (status, description) in answers {
        let responses = &mut operation.responses.responses;
        match responses.get_mut(status) {
            Some(RefOr::T(existing)) if !existing.description.contains(description) => {
                existing.description = format!("{}; or: {description}", existing.description);
            }
            Some(_) => {}
            None => {
                responses.insert(status.to_owned(), RefOr::T(error_answer(status, description)));
            }
        }
    }
}

fn error_answer(status: &str, description: &str) -> Response {
    let answer =
        ResponseBuilder::new().description(description).content("application/json", Content::new(Some(Ref::from_schema_name("ErrorBody"))));
    let answer = if status == "429" {
        use utoipa::openapi::header::HeaderBuilder;
        use utoipa::openapi::{ObjectBuilder, Type};
        let integer = || Some(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)));
        let text = || Some(ObjectBuilder::new().schema_type(Type::String));
        answer
            .header("Retry-After", HeaderBuilder::new().schema(integer()).description(Some("Whole seconds to wait")).build())
            .header("RateLimit", HeaderBuilder::new().schema(text()).description(Some("\"default\";r=<remaining>;t=<seconds>")).build())
            .header("RateLimit-Policy", HeaderBuilder::new().schema(text()).description(Some("\"default\";q=<rate>;w=1")).build())
    } else {
        answer
    };
    answer.build()
}
