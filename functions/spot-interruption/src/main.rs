use lambda_runtime::{LambdaEvent, run, service_fn};
use serde_json::Value;
use spotkeeper::{Deps, config::Config};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    spotkeeper::telemetry::init();
    let config = Config::from_env()?;
    let deps = Deps::init(&config, &spotkeeper::aws::sdk_config().await).await?;
    run(service_fn(|event: LambdaEvent<Value>| spot_interruption::handle(&deps, event.payload))).await
}
