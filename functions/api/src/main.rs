use std::sync::Arc;

use spotkeeper::{Deps, config::Config};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    spotkeeper::telemetry::init();
    let config = Config::from_env()?;
    let deps = Deps::init(&config, &spotkeeper::adapters::aws::sdk_config().await).await?;
    let api = api::Api::new(&config, deps).await?;
    lambda_http::run(api::router(Arc::new(api))).await
}
