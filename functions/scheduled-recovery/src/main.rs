#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    spotkeeper::serve("scheduled-recovery", scheduled_recovery::handle).await
}
