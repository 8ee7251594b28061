//! `scheduled-recovery`: every five minutes, the savings ledger, the reconcile (table against
//! EC2), the way back to Spot, the groups' images (made on their schedule, activated, pruned) and
//! the volume moves under way; and, on `EC2 Instance Launch Unsuccessful` for lack of capacity, an
//! Auto Scaling group's fallback to On-Demand. The jobs live in `spotkeeper::workflows::scheduled`.

use serde::Serialize;
use serde_json::Value;
use spotkeeper::event::{self, LAUNCH_UNSUCCESSFUL, SCHEDULED_EVENT};
use spotkeeper::workflows::scheduled;
use spotkeeper::{Deadline, Deps, Error};

/// The function's entry: the schedule's event, or Auto Scaling's launch failures.
pub async fn handle(deps: &Deps, payload: Value, deadline: Deadline) -> Result<Value, Error> {
    match event::detail_type(&payload).as_deref() {
        Some(SCHEDULED_EVENT) => answer(scheduled::run(deps, deadline).await?),
        Some(LAUNCH_UNSUCCESSFUL) => {
            event::dispatch(payload, LAUNCH_UNSUCCESSFUL, |e| scheduled::launch_failed(deps, e, deadline)).await
        }
        _ => Err(event::unexpected(&payload, "Scheduled Event or EC2 Instance Launch Unsuccessful").into()),
    }
}

/// The outcome as the function's JSON answer.
fn answer(outcome: impl Serialize) -> Result<Value, Error> {
    serde_json::to_value(outcome).map_err(Error::Outcome)
}
