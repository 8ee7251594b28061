//! `node-drain`: an EKS worker node's interruption warning or rebalance recommendation. Reads the
//! events (a bare event or an SQS batch), hands each to the drain workflow — cordon at once, then
//! evict the node's pods against the warning's deadline — and answers the batch.

use serde_json::Value;
use spotkeeper::event::{self, Batch, NODE_EVENTS, NodeEvent};
use spotkeeper::workflows::drain;
use spotkeeper::{Deadline, Deps, Error};

/// The function's entry: parse the events, run the drains, answer.
pub async fn handle(deps: &Deps, payload: Value, deadline: Deadline) -> Result<Value, Error> {
    let batch = Batch::<NodeEvent>::open_any(payload, NODE_EVENTS)?;
    let answers = drain::nodes(deps, batch, deadline).await;
    event::respond_outcomes(answers)
}
