//! The request's deadline, for the report that ends it: Lambda's, when the request came through
//! Lambda; otherwise the function's timeout from now (local runs and tests).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use lambda_http::Context;
use spotkeeper::Deadline;

/// The API function's timeout in the template (`Globals.Function.Timeout`).
const TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) struct RequestDeadline(pub Deadline);

impl<S: Send + Sync> FromRequestParts<S> for RequestDeadline {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        let lambda = parts.extensions.get::<Context>().map(|context| Deadline::at(context.deadline()));
        Ok(Self(lambda.unwrap_or_else(|| Deadline::after(TIMEOUT))))
    }
}
