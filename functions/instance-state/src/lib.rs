//! `instance-state`: reacts to `EC2 Instance State-change Notification` — a standalone member
//! that runs goes online (and settles what it replaces), one that dies in its image's probation
//! rolls the image back, a leaving one hands its data volumes on and is forgotten once gone. The
//! workflow is `spotkeeper::workflows::instance_state`; the decision, `decisions::transitions`.

use serde_json::Value;
use spotkeeper::event::{self, INSTANCE_STATE_CHANGE};
use spotkeeper::workflows::instance_state;
use spotkeeper::{Deadline, Deps, Error};

/// The function's entry: a bare event or an SQS batch of them. An event whose state EC2 does not
/// have is malformed: acknowledged and counted, nothing changed. Every wait ends before the
/// invocation's `deadline`.
pub async fn handle(deps: &Deps, payload: Value, deadline: Deadline) -> Result<Value, Error> {
    event::dispatch(payload, INSTANCE_STATE_CHANGE, |e| instance_state::state_changed(deps, e, deadline)).await
}
