#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    spotkeeper::serve("rebalance-recommendation", rebalance_recommendation::handle).await
}
