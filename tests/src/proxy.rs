//! A fault-injecting proxy in front of the emulator. It forwards every AWS call, records each
//! one (service, operation, order), and answers for the emulator when a rule says so: the
//! failures moto cannot produce (capacity errors, throttling) come from here.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

/// One AWS call as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Call {
    /// The signing name: `ec2`, `dynamodb`, `autoscaling`, `route53`, `sns`, ...
    pub service: String,
    /// `CreateFleet`, `PutItem`, ... (for Route53's REST calls, the method and path)
    pub operation: String,
    /// The request body (form parameters or JSON).
    pub body: String,
    pub at: Instant,
    /// When its answer went back (for counting sequential rounds).
    pub answered: Option<Instant>,
    /// Answered by a rule instead of the emulator.
    pub faulted: bool,
}

/// What the proxy answers instead of the emulator.
#[derive(Debug, Clone)]
pub struct Fault {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    /// Let the emulator do the work first, then answer with the fault: the caller never learns
    /// it succeeded (a lost answer).
    pub after_forwarding: bool,
}

impl Fault {
    pub fn answer(status: u16, content_type: &'static str, body: String) -> Self {
        Self { status, content_type, body, after_forwarding: false }
    }
}

type Rule = Box<dyn Fn(&Call) -> Option<Fault> + Send + Sync>;

#[derive(Default)]
struct Shared {
    calls: Mutex<Vec<Call>>,
    rules: Mutex<Vec<Rule>>,
}

pub struct FaultProxy {
    pub endpoint: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

fn operation(headers: &HeaderMap, method: &str, path: &str, body: &str) -> (String, String) {
    let service = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split("Credential=").nth(1))
        .and_then(|c| c.split('/').nth(3))
        .unwrap_or("unknown")
        .to_string();
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).and_then(|t| t.rsplit('.').next());
    let action = body.split('&').find_map(|kv| kv.strip_prefix("Action="));
    let op = match (target, action) {
        (Some(op), _) | (None, Some(op)) => op.to_string(),
        (None, None) => format!("{method} {path}"),
    };
    (service, op)
}

async fn forward(
    State((shared, upstream, client)): State<(Arc<Shared>, String, reqwest::Client)>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 << 20).await else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let text = String::from_utf8_lossy(&bytes).to_string();
    let path = parts.uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default();
    let (service, op) = operation(&parts.headers, parts.method.as_str(), parts.uri.path(), &text);
    let mut call = Call { service, operation: op, body: text, at: Instant::now(), answered: None, faulted: false };
    let fault = shared.rules.lock().ok().and_then(|rules| rules.iter().find_map(|rule| rule(&call)));
    call.faulted = fault.is_some();
    let index = shared
        .calls
        .lock()
        .map(|mut calls| {
            calls.push(call);
            calls.len() - 1
        })
        .ok();
    let answered = |shared: &Shared| {
        if let (Some(index), Ok(mut calls)) = (index, shared.calls.lock())
            && let Some(call) = calls.get_mut(index)
        {
            call.answered = Some(Instant::now());
        }
    };
    let fault_now = fault.as_ref().is_some_and(|f| !f.after_forwarding);
    if let (Some(fault), true) = (&fault, fault_now) {
        answered(&shared);
        let status = StatusCode::from_u16(fault.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (status, [("content-type", fault.content_type)], fault.body.clone()).into_response();
    }
    let mut upstream_request =
        client.request(parts.method.clone(), format!("{upstream}{path}")).body(Bytes::from(bytes.to_vec()));
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            upstream_request = upstream_request.header(name, value);
        }
    }
    let result = upstream_request.send().await;
    answered(&shared);
    if let Some(fault) = fault {
        let status = StatusCode::from_u16(fault.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (status, [("content-type", fault.content_type)], fault.body).into_response();
    }
    match result {
        Ok(answer) => {
            let status = answer.status();
            let headers = answer.headers().clone();
            let body = answer.bytes().await.unwrap_or_default();
            let mut response = (status, body).into_response();
            for (name, value) in &headers {
                if name != "content-length" && name != "transfer-encoding" && name != "connection" {
                    response.headers_mut().insert(name, value.clone());
                }
            }
            response
        }
        Err(err) => (StatusCode::BAD_GATEWAY, err.to_string()).into_response(),
    }
}

impl FaultProxy {
    /// Starts the proxy on a free port of 127.0.0.1, forwarding to `upstream`.
    pub async fn start(upstream: &str) -> Self {
        let shared = Arc::new(Shared::default());
        let client = reqwest::Client::new();
        let app = Router::new().fallback(forward).with_state((shared.clone(), upstream.to_string(), client));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port on 127.0.0.1");
        let address: SocketAddr = listener.local_addr().expect("the proxy's address");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { endpoint: format!("http://{address}"), shared, server }
    }

    /// Adds a rule: the first rule that answers for a call answers it.
    pub fn on(&self, rule: impl Fn(&Call) -> Option<Fault> + Send + Sync + 'static) {
        if let Ok(mut rules) = self.shared.rules.lock() {
            rules.push(Box::new(rule));
        }
    }

    pub fn clear_rules(&self) {
        if let Ok(mut rules) = self.shared.rules.lock() {
            rules.clear();
        }
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.shared.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    pub fn forget_calls(&self) {
        if let Ok(mut calls) = self.shared.calls.lock() {
            calls.clear();
        }
    }

    /// The sequential rounds of calls before the first call of `operation`: a call opens a new
    /// round when it arrives after every call of the current round was answered.
    pub fn rounds_before(&self, operation: &str) -> Option<usize> {
        let calls = self.calls();
        let target = calls.iter().position(|c| c.operation == operation)?;
        let mut rounds = 0;
        let mut round_end: Option<Instant> = None;
        for call in &calls[..target] {
            if round_end.is_none_or(|end| call.at >= end) {
                rounds += 1;
                round_end = call.answered;
            } else if let (Some(end), Some(answered)) = (round_end, call.answered) {
                round_end = Some(end.max(answered));
            }
        }
        Some(rounds)
    }

    /// How many calls of `operation` were made.
    pub fn count(&self, operation: &str) -> usize {
        self.calls().iter().filter(|c| c.operation == operation).count()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The EC2 error body, as EC2 sends it.
pub fn ec2_error(code: &str, message: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>5f2f6c4e-0c8e-4bd5-9d4f-1f2e3d4c5b6a</RequestID></Response>"
    )
}

/// An instant fleet's answer when no pool had capacity: HTTP 200, no instances, one error per pool.
pub fn fleet_without_capacity(pools: &[(&str, &str)], lifecycle: &str) -> String {
    let errors: String = pools
        .iter()
        .map(|(instance_type, subnet)| {
            format!(
                "<item><launchTemplateAndOverrides><overrides><instanceType>{instance_type}</instanceType><subnetId>{subnet}</subnetId></overrides></launchTemplateAndOverrides><lifecycle>{lifecycle}</lifecycle><errorCode>InsufficientInstanceCapacity</errorCode><errorMessage>There is no Spot capacity available that matches your request.</errorMessage></item>"
            )
        })
        .collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CreateFleetResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d</requestId><fleetId>fleet-0123456789abcdef0</fleetId><errorSet>{errors}</errorSet><fleetInstanceSet/></CreateFleetResponse>"
    )
}

/// True for a CreateFleet call that asks for Spot.
pub fn is_spot_fleet(call: &Call) -> bool {
    call.operation == "CreateFleet" && call.body.contains("DefaultTargetCapacityType=spot")
}
