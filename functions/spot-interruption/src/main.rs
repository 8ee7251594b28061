#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    spotkeeper::serve("spot-interruption", spot_interruption::handle).await
}
