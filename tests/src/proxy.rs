//! A fault-injecting proxy in front of the emulator. It forwards every AWS call, records each
//! one (service, operation, order), and answers for the emulator when a rule says so: the
//! failures moto cannot produce (capacity errors, throttling) come from here.
//!
//! The same proxy fronts the fake Kubernetes API server over TLS (`FaultProxy::start_tls`), as
//! an EKS endpoint is reached: the drain's client trusts only the proxy's test CA, and the
//! Kubernetes-shaped faults (`FaultProxy::kube_chaos`) come from here.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

/// One call as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Call {
    /// The signing name: `ec2`, `dynamodb`, `autoscaling`, `route53`, `sns`, ...; `kubernetes`
    /// behind `start_tls`.
    pub service: String,
    /// `CreateFleet`, `PutItem`, ... (for Route53's REST calls and Kubernetes', the method and
    /// path: `POST /api/v1/namespaces/shop/pods/web-0/eviction`)
    pub operation: String,
    /// The request body (form parameters or JSON).
    pub body: String,
    pub at: Instant,
    /// When its answer went back (for counting sequential rounds).
    pub answered: Option<Instant>,
    /// The fault a rule put on it, if any.
    pub fault: Option<&'static str>,
}

/// What the proxy does instead of (or besides) forwarding a call to the emulator.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this (and these headers); after the emulator did the work when
    /// `after_forwarding` (the caller never learns it succeeded: a lost answer).
    Answer {
        status: u16,
        content_type: &'static str,
        body: String,
        headers: Vec<(&'static str, String)>,
        after_forwarding: bool,
    },
    /// Close the connection without an answer, before or after the emulator did the work.
    Drop { after_forwarding: bool },
    /// Forward this late.
    Slow(Duration),
    /// Forward at once, answer this late: the work is done while the caller still waits.
    Late(Duration),
}

impl Fault {
    pub fn answer(status: u16, content_type: &'static str, body: String) -> Self {
        Self::Answer { status, content_type, body, headers: Vec::new(), after_forwarding: false }
    }

    /// The emulator does the work, the caller gets this answer instead of its own.
    pub fn lost(status: u16, content_type: &'static str, body: String) -> Self {
        Self::Answer { status, content_type, body, headers: Vec::new(), after_forwarding: true }
    }

    /// The same answer with one more header (`Retry-After`, ...); other faults are left as they are.
    #[must_use]
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        if let Self::Answer { headers, .. } = &mut self {
            headers.push((name, value.into()));
        }
        self
    }

    /// The same fault, after the emulator did the work.
    pub fn after_the_work(self) -> Self {
        match self {
            Self::Answer { status, content_type, body, headers, .. } => {
                Self::Answer { status, content_type, body, headers, after_forwarding: true }
            }
            Self::Drop { .. } => Self::Drop { after_forwarding: true },
            slow => slow,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Answer { after_forwarding: false, .. } => "answer",
            Self::Answer { after_forwarding: true, .. } => "lost answer",
            Self::Drop { after_forwarding: false } => "dropped",
            Self::Drop { after_forwarding: true } => "dropped after the work",
            Self::Slow(_) => "slow",
            Self::Late(_) => "late answer",
        }
    }

    fn after_forwarding(&self) -> bool {
        matches!(self, Self::Answer { after_forwarding: true, .. } | Self::Drop { after_forwarding: true })
    }

    fn respond(self) -> Response {
        match self {
            Self::Answer { status, content_type, body, headers, .. } => {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let mut response = (status, [("content-type", content_type)], body).into_response();
                for (name, value) in headers {
                    if let Ok(value) = axum::http::HeaderValue::from_str(&value) {
                        response.headers_mut().insert(name, value);
                    }
                }
                response
            }
            // Headers promise a body that never comes: the connection closes mid-answer.
            Self::Drop { .. } | Self::Slow(_) | Self::Late(_) => {
                let broken = futures::stream::once(async { Err::<Bytes, _>(std::io::Error::other("dropped")) });
                (StatusCode::OK, [("content-length", "512")], Body::from_stream(broken)).into_response()
            }
        }
    }
}

type Rule = Box<dyn Fn(&Call) -> Option<Fault> + Send + Sync>;

/// The emulator's answer, kept whole so it can be given again.
#[derive(Debug, Clone)]
struct Upstream {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Upstream {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.body).into_response();
        for (name, value) in &self.headers {
            if name != "content-length" && name != "transfer-encoding" && name != "connection" {
                response.headers_mut().insert(name, value.clone());
            }
        }
        response
    }
}

/// An idempotent request's first body and answer, by client token.
type Firsts = tokio::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<(String, Upstream)>>>>>;

#[derive(Default)]
struct Shared {
    calls: Mutex<Vec<Call>>,
    rules: Mutex<Vec<Rule>>,
    firsts: Firsts,
    /// In front of a Kubernetes API server: calls are named by method and path.
    kubernetes: bool,
}

pub struct FaultProxy {
    /// `http://127.0.0.1:<port>`, or `https://` from `start_tls`.
    pub endpoint: String,
    /// The test CA (PEM) the TLS front's certificate is signed by; `None` for plain HTTP.
    pub ca_pem: Option<String>,
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
    let action = form_value(body, "Action");
    let op = match (target, action) {
        (Some(op), _) | (None, Some(op)) => op.to_string(),
        (None, None) => format!("{method} {path}"),
    };
    (service, op)
}

fn form_value<'a>(body: &'a str, name: &str) -> Option<&'a str> {
    body.split('&').find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

type Upstreaming = (Arc<Shared>, String, reqwest::Client);

async fn send_upstream(
    (_, upstream, client): &Upstreaming,
    parts: &axum::http::request::Parts,
    bytes: Bytes,
) -> Result<Upstream, String> {
    let path = parts.uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default();
    let mut request = client.request(parts.method.clone(), format!("{upstream}{path}")).body(bytes);
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            request = request.header(name, value);
        }
    }
    let answer = request.send().await.map_err(|e| e.to_string())?;
    let status = answer.status();
    let headers = answer.headers().clone();
    let body = answer.bytes().await.map_err(|e| e.to_string())?;
    Ok(Upstream { status, headers, body })
}

/// The client token that makes a call idempotent in AWS (the emulator ignores them): EC2's
/// launches, DynamoDB's write transactions.
fn client_token(call: &Call) -> Option<String> {
    match (call.service.as_str(), call.operation.as_str()) {
        ("ec2", "CreateFleet" | "RunInstances") => form_value(&call.body, "ClientToken").map(str::to_string),
        ("dynamodb", "TransactWriteItems") => serde_json::from_str::<serde_json::Value>(&call.body)
            .ok()?
            .get("ClientRequestToken")?
            .as_str()
            .map(str::to_string),
        _ => None,
    }
}

/// AWS does the work at most once per client token, whatever the retries: a repeated request
/// gets the first one's answer, a different request with the same token
/// `IdempotentParameterMismatch`. Concurrent repeats wait for the first.
async fn once(
    state: &Upstreaming,
    parts: &axum::http::request::Parts,
    bytes: Bytes,
    service: &str,
    token: &str,
) -> Result<Upstream, String> {
    let body = String::from_utf8_lossy(&bytes).to_string();
    let entry = state.0.firsts.lock().await.entry(format!("{service}/{token}")).or_default().clone();
    let mut first = entry.lock().await;
    if let Some((first_body, answer)) = first.as_ref() {
        if *first_body == body {
            return Ok(answer.clone());
        }
        let message = "The client token was used with other parameters.";
        let body = match service {
            "ec2" => ec2_error("IdempotentParameterMismatch", message),
            _ => format!(
                r#"{{"__type":"com.amazonaws.dynamodb.v20120810#IdempotentParameterMismatchException","message":"{message}"}}"#
            ),
        };
        return Ok(Upstream { status: StatusCode::BAD_REQUEST, headers: HeaderMap::new(), body: body.into() });
    }
    let answer = send_upstream(state, parts, bytes).await?;
    if answer.status.is_success() {
        *first = Some((body, answer.clone()));
    }
    Ok(answer)
}

async fn forward(State(state): State<Upstreaming>, request: Request) -> Response {
    let shared = state.0.clone();
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 << 20).await else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let text = String::from_utf8_lossy(&bytes).to_string();
    let (service, op) = if shared.kubernetes {
        ("kubernetes".to_string(), format!("{} {}", parts.method, parts.uri.path()))
    } else {
        operation(&parts.headers, parts.method.as_str(), parts.uri.path(), &text)
    };
    let mut call = Call { service, operation: op, body: text, at: Instant::now(), answered: None, fault: None };
    let fault = shared.rules.lock().ok().and_then(|rules| rules.iter().find_map(|rule| rule(&call)));
    call.fault = fault.as_ref().map(Fault::kind);
    let token = client_token(&call).map(|token| (call.service.clone(), token));
    let index = shared
        .calls
        .lock()
        .map(|mut calls| {
            calls.push(call);
            calls.len() - 1
        })
        .ok();
    let answered = || {
        if let (Some(index), Ok(mut calls)) = (index, shared.calls.lock())
            && let Some(call) = calls.get_mut(index)
        {
            call.answered = Some(Instant::now());
        }
    };
    match fault {
        Some(Fault::Slow(delay)) => tokio::time::sleep(delay).await,
        Some(Fault::Late(_)) => {}
        Some(fault) if !fault.after_forwarding() => {
            answered();
            return fault.respond();
        }
        _ => {}
    }
    let result = match &token {
        Some((service, token)) => once(&state, &parts, bytes, service, token).await,
        None => send_upstream(&state, &parts, bytes).await,
    };
    if let Some(Fault::Late(delay)) = &fault {
        tokio::time::sleep(*delay).await;
    }
    answered();
    match (fault, result) {
        (Some(fault), _) if fault.after_forwarding() => fault.respond(),
        (_, Ok(answer)) => answer.into_response(),
        (_, Err(err)) => (StatusCode::BAD_GATEWAY, err).into_response(),
    }
}

impl FaultProxy {
    /// Starts the proxy on a free port of 127.0.0.1, forwarding to `upstream`.
    pub async fn start(upstream: &str) -> Self {
        let shared = Arc::new(Shared::default());
        let client = reqwest::Client::new();
        let state: Upstreaming = (shared.clone(), upstream.to_string(), client);
        let app = Router::new().fallback(forward).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port on 127.0.0.1");
        let address: SocketAddr = listener.local_addr().expect("the proxy's address");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { endpoint: format!("http://{address}"), ca_pem: None, shared, server }
    }

    /// Starts the proxy as a Kubernetes API server's front: HTTPS on a free port of 127.0.0.1
    /// with a certificate of its own test CA (`ca_pem`, what a group's `kubernetes.ca` holds),
    /// forwarding plain HTTP to `upstream` (a `FakeKube` started without TLS). Calls are named
    /// `kubernetes` / `METHOD /path`.
    pub async fn start_tls(upstream: &str) -> Self {
        use hyper_util::rt::TokioIo;
        use hyper_util::service::TowerToHyperService;

        let shared = Arc::new(Shared { kubernetes: true, ..Shared::default() });
        let client = reqwest::Client::new();
        let state: Upstreaming = (shared.clone(), upstream.to_string(), client);
        let app = Router::new().fallback(forward).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port on 127.0.0.1");
        let address: SocketAddr = listener.local_addr().expect("the proxy's address");
        let ca = crate::kube::tls::TestCa::generate();
        let acceptor = tokio_rustls::TlsAcceptor::from(ca.server.clone());
        let server = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { continue };
                let acceptor = acceptor.clone();
                let service = TowerToHyperService::new(app.clone());
                tokio::spawn(async move {
                    // A client that gives up during the handshake is its own business.
                    let Ok(stream) = acceptor.accept(tcp).await else { return };
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { endpoint: format!("https://{address}"), ca_pem: Some(ca.ca_pem), shared, server }
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

/// Takes from a token bucket: `capacity` tokens, refilled at `refill` a second.
struct Bucket {
    capacity: f64,
    refill: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(capacity: u32, refill: u32) -> Self {
        let capacity = f64::from(capacity);
        Self { capacity, refill: f64::from(refill), tokens: capacity, at: Instant::now() }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * self.refill).min(self.capacity);
        self.at = now;
        let taken = self.tokens >= 1.0;
        if taken {
            self.tokens -= 1.0;
        }
        taken
    }
}

/// splitmix64: a seeded sequence of draws, one per call.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// What can go wrong on AWS's side of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trouble {
    /// HTTP 500.
    InternalError,
    /// HTTP 503.
    Unavailable,
    /// The account's request rate is exceeded.
    Throttled,
}

/// What a service answers for `trouble`: each protocol's own status, code and body.
pub fn service_error(service: &str, trouble: Trouble) -> Fault {
    let (status, code, message) = match (service, trouble) {
        ("ec2", Trouble::InternalError) => (500, "InternalError", "An internal error has occurred."),
        ("ec2", Trouble::Unavailable) => (503, "Unavailable", "The server is overloaded and can't handle the request."),
        // EC2 throttles with a 503, the others with a 400.
        ("ec2", Trouble::Throttled) => (503, "RequestLimitExceeded", "Request limit exceeded."),
        ("dynamodb", Trouble::InternalError) => (500, "InternalServerError", "Internal server error"),
        ("dynamodb", Trouble::Unavailable) => (503, "ServiceUnavailable", "Service unavailable"),
        ("dynamodb", Trouble::Throttled) => {
            (400, "ThrottlingException", "Rate of requests exceeds the allowed throughput.")
        }
        (_, Trouble::InternalError) => (500, "InternalFailure", "An internal error occurred."),
        (_, Trouble::Unavailable) => (503, "ServiceUnavailable", "Service is unavailable."),
        (_, Trouble::Throttled) => (400, "Throttling", "Rate exceeded"),
    };
    let sender = if status < 500 { "Sender" } else { "Receiver" };
    match service {
        "ec2" => Fault::answer(status, "text/xml", ec2_error(code, message)),
        "dynamodb" => Fault::answer(
            status,
            "application/x-amz-json-1.0",
            format!(r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{code}","message":"{message}"}}"#),
        ),
        "ssm" | "pricing" => Fault::answer(
            status,
            "application/x-amz-json-1.1",
            format!(r#"{{"__type":"{code}","message":"{message}"}}"#),
        ),
        _ => Fault::answer(
            status,
            "text/xml",
            format!(
                "<ErrorResponse><Error><Type>{sender}</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>5f2f6c4e-0c8e-4bd5-9d4f-1f2e3d4c5b6a</RequestId></ErrorResponse>"
            ),
        ),
    }
}

impl FaultProxy {
    /// Faults `rate` of all calls, drawn from `seed`: 500s, 503s, throttling, answers up to 2 s slow,
    /// connections dropped before or after the emulator did the work, and lost answers. The
    /// draws follow the order calls arrive in, so concurrent runs differ in which call gets which.
    pub fn chaos(&self, rate: f64, seed: u64) {
        let drawn = std::sync::atomic::AtomicU64::new(0);
        self.on(move |call| {
            let draw = mix(seed ^ drawn.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
            if (draw >> 11) as f64 / (1u64 << 53) as f64 >= rate {
                return None;
            }
            let pick = mix(draw);
            Some(match pick % 7 {
                0 => service_error(&call.service, Trouble::InternalError),
                1 => service_error(&call.service, Trouble::Unavailable),
                2 => service_error(&call.service, Trouble::Throttled),
                // Up to 2 s slow, before or after the work.
                3 if (pick >> 40) & 1 == 0 => Fault::Slow(Duration::from_millis(100 + (pick >> 8) % 1900)),
                3 => Fault::Late(Duration::from_millis(100 + (pick >> 8) % 1900)),
                4 => Fault::Drop { after_forwarding: false },
                5 => Fault::Drop { after_forwarding: false }.after_the_work(),
                _ => service_error(&call.service, Trouble::InternalError).after_the_work(),
            })
        });
    }

    /// Faults `rate` of the calls to a Kubernetes API server (behind `start_tls`), drawn from
    /// `seed` as `chaos` draws: a 500 or 503 with the API server's `Status` body, a 429 from its
    /// priority and fairness (`details.retryAfterSeconds` and `Retry-After`, 1 to 3 s), the
    /// connection dropped before the server did the work, or after it (dropped, or a 500): the
    /// server evicted or patched, the caller never heard.
    pub fn kube_chaos(&self, rate: f64, seed: u64) {
        let drawn = std::sync::atomic::AtomicU64::new(0);
        self.on(move |_| {
            let draw = mix(seed ^ drawn.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
            if (draw >> 11) as f64 / (1u64 << 53) as f64 >= rate {
                return None;
            }
            let pick = mix(draw);
            Some(match pick % 6 {
                0 => kube_error(500, "InternalError", "Internal error occurred: etcdserver: request timed out", None),
                1 => {
                    kube_error(503, "ServiceUnavailable", "the server is currently unable to handle the request", None)
                }
                2 => kube_error(
                    429,
                    "TooManyRequests",
                    "Too many requests, please try again later.",
                    Some(1 + (pick >> 8) % 3),
                ),
                3 => Fault::Drop { after_forwarding: false },
                4 => Fault::Drop { after_forwarding: true },
                _ => kube_error(500, "InternalError", "Internal error occurred: etcdserver: leader changed", None)
                    .after_the_work(),
            })
        });
    }

    /// EC2's request rate limits, as token buckets per category: launches (`RunInstances`,
    /// `CreateFleet`) and other mutating calls; a call finding its bucket empty is throttled
    /// with `RequestLimitExceeded`. Reads are not limited here.
    pub fn ec2_rate_limits(&self, launches: (u32, u32), mutating: (u32, u32)) {
        let buckets = Mutex::new((Bucket::new(launches.0, launches.1), Bucket::new(mutating.0, mutating.1)));
        self.on(move |call| {
            if call.service != "ec2" {
                return None;
            }
            let reads = ["Describe", "Get", "List"];
            let mut buckets = buckets.lock().ok()?;
            let taken = match call.operation.as_str() {
                "RunInstances" | "CreateFleet" => buckets.0.take(),
                op if reads.iter().any(|r| op.starts_with(r)) => true,
                _ => buckets.1.take(),
            };
            (!taken).then(|| service_error("ec2", Trouble::Throttled))
        });
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// An AWS refusal as the query-protocol services (Auto Scaling, SNS, ...) send it; like AWS's,
/// its message names the caller's role and account (`arn`).
pub fn access_denied(action: &str, arn: &str) -> Fault {
    Fault::answer(
        403,
        "text/xml",
        format!(
            "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>User: {arn} is not authorized to perform: {action}</Message></Error><RequestId>7a62c49f-347e-4fc4-9331-6e8e1d2c3b4a</RequestId></ErrorResponse>"
        ),
    )
}

/// A Kubernetes API server's failure: its `Status` body, and for a 429 the seconds to wait, in
/// the body (`details.retryAfterSeconds`) and in `Retry-After`, as priority and fairness sends them.
pub fn kube_error(code: u16, reason: &'static str, message: &str, retry_after: Option<u64>) -> Fault {
    let details = retry_after.map(|s| serde_json::json!({"retryAfterSeconds": s}));
    let status = crate::kube::ApiError { code, reason, message: message.to_string(), details }.status();
    let fault = Fault::answer(code, "application/json", status.to_string());
    match retry_after {
        Some(seconds) => fault.with_header("retry-after", seconds.to_string()),
        None => fault,
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

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::kube::{FakeKube, Options};

    #[tokio::test]
    async fn the_tls_front_names_kubernetes_calls_and_fails_them_as_an_api_server_does() {
        let fake = FakeKube::start_with(Options { tls: false, auth: false, ..Options::default() }).await;
        let proxy = FaultProxy::start_tls(&fake.url).await;
        assert!(proxy.endpoint.starts_with("https://127.0.0.1:"), "{}", proxy.endpoint);
        let ca = reqwest::Certificate::from_pem(proxy.ca_pem.as_deref().expect("a CA").as_bytes()).expect("the CA");
        let client = reqwest::Client::builder().tls_certs_only([ca]).build().expect("a client");
        let nodes = format!("{}/api/v1/nodes?limit=1", proxy.endpoint);
        let answer = client.get(&nodes).send().await.expect("forwarded");
        assert_eq!(answer.status(), 200);
        assert_eq!(answer.json::<Value>().await.expect("JSON")["kind"], "NodeList");

        proxy.on(|call| {
            let busy = "Too many requests, please try again later.";
            (call.operation == "GET /api/v1/nodes").then(|| kube_error(429, "TooManyRequests", busy, Some(2)))
        });
        let throttled = client.get(&nodes).send().await.expect("answered");
        assert_eq!(throttled.status(), 429);
        assert_eq!(throttled.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("2"));
        let status: Value = throttled.json().await.expect("a Status");
        assert_eq!(status["kind"], "Status");
        assert_eq!(status["reason"], "TooManyRequests");
        assert_eq!(status["details"]["retryAfterSeconds"], 2);

        let calls = proxy.calls();
        let named: Vec<(&str, &str, Option<&str>)> =
            calls.iter().map(|c| (c.service.as_str(), c.operation.as_str(), c.fault)).collect();
        assert_eq!(
            named,
            [("kubernetes", "GET /api/v1/nodes", None), ("kubernetes", "GET /api/v1/nodes", Some("answer"))]
        );
        assert_eq!(fake.requests().len(), 1, "the fault answered for the server");
    }
}
