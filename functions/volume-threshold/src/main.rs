#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    spotkeeper::serve(volume_threshold::handle).await
}
