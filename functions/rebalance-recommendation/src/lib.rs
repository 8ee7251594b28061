//! `rebalance-recommendation`: EC2's early word that a Spot instance is at elevated risk of
//! interruption. Reads the recommendations (a bare event or an SQS batch), hands them to the
//! rebalance workflow — which acts per the group's policy, one replacement in flight per group —
//! and answers the batch.

use serde_json::Value;
use spotkeeper::event::{self, Batch, REBALANCE_RECOMMENDATION, RebalanceRecommendation};
use spotkeeper::workflows::rebalance;
use spotkeeper::{Deadline, Deps, Error};

/// The function's entry: parse the event (bare or an SQS batch), run the workflow, answer.
pub async fn handle(deps: &Deps, payload: Value, deadline: Deadline) -> Result<Value, Error> {
    let batch = Batch::<RebalanceRecommendation>::open(payload, REBALANCE_RECOMMENDATION)?;
    let answers = rebalance::recommendations(deps, batch, deadline).await;
    event::respond_typed(answers.intake, answers.handled)
}
