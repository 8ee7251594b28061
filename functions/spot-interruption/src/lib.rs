//! `spot-interruption`: two minutes' notice. Reads the warnings (a bare event or an SQS batch),
//! hands them to the interruption workflow — which sends each launch or detach after one round
//! of table calls, then records and reports — and answers the batch.

use std::time::Instant;

use serde_json::Value;
use spotkeeper::event::{self, Batch, SPOT_INTERRUPTION_WARNING, SpotInterruptionWarning};
use spotkeeper::workflows::interruption;
use spotkeeper::{Deadline, Deps, Error};

/// The function's entry: a bare event or an SQS batch of them.
pub async fn handle(deps: &Deps, payload: Value, deadline: Deadline) -> Result<Value, Error> {
    let arrived = Instant::now();
    let batch = Batch::<SpotInterruptionWarning>::open(payload, SPOT_INTERRUPTION_WARNING)?;
    let answers = interruption::interruptions(deps, batch, arrived, deadline).await;
    event::respond_typed(answers.intake, answers.handled)
}
