#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    spotkeeper::serve(rebalance_recommendation::handle).await
}
