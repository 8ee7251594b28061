#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    spotkeeper::serve("volume-threshold", volume_threshold::handle).await
}
