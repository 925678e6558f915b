//! The OpenAPI document, assembled from the routes' annotations.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{builds, functions, releases, system, tasks};

/// The API's OpenAPI 3 document: `ApiDoc::openapi()`.
#[derive(OpenApi)]
#[openapi(
    info(title = "hoist", description = "Function platform API: submit functions and release builds, watch their builds, invoke functions."),
    paths(
        functions::create, functions::list, functions::show, functions::delete, functions::invoke,
        tasks::show,
        builds::show, builds::list, builds::cancel, builds::stream,
        releases::create, releases::options, releases::upload, releases::show_artifact,
        system::health, system::metrics, system::openapi,
    ),
    components(schemas(
        functions::CreateFunction, functions::FunctionCreated, functions::FunctionView,
        functions::FunctionList, functions::Invoke,
        tasks::TaskView, tasks::Logs,
        builds::BuildView, builds::BuildList, builds::Cancelled,
        releases::CreateRelease, releases::ReleaseCreated, releases::ReleaseOptions,
        releases::ArtifactView,
        system::Health, super::ErrorBody, super::ErrorDetail,
    )),
    modifiers(&Bearer),
)]
pub struct ApiDoc;

/// API keys as bearer tokens.
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
