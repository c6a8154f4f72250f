//! The generated OpenAPI document.
