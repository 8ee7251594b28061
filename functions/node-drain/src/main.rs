#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    spotkeeper::serve("node-drain", node_drain::handle).await
}
