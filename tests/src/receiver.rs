//! A local HTTP server standing in for Slack and webhook receivers: it records every request it
//! gets and answers with a chosen status (and, for a redirect, a chosen `Location`).

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;

#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: String,
}

#[derive(Default)]
struct Shared {
    received: Mutex<Vec<Received>>,
    status: AtomicU16,
    location: Mutex<Option<String>>,
}

pub struct Receiver {
    pub url: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

async fn record(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Ok(mut received) = shared.received.lock() {
        received.push(Received {
            method: method.to_string(),
            path: uri.path().to_string(),
            headers,
            body: String::from_utf8_lossy(&body).into(),
        });
    }
    let status = StatusCode::from_u16(shared.status.load(Ordering::Relaxed)).unwrap_or(StatusCode::OK);
    match shared.location.lock().ok().and_then(|l| l.clone()) {
        Some(location) => (status, [("location", location)]).into_response(),
        None => status.into_response(),
    }
}

impl Receiver {
    /// Starts on a free port of 127.0.0.1; every request under `/` is recorded.
    pub async fn start() -> Self {
        let shared = Arc::new(Shared { status: AtomicU16::new(200), ..Default::default() });
        let app = Router::new().route("/{*path}", any(record)).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port on 127.0.0.1");
        let address = listener.local_addr().expect("the receiver's address");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url: format!("http://{address}"), shared, server }
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Answer every later POST with `status`.
    pub fn answer(&self, status: u16) {
        self.shared.status.store(status, Ordering::Relaxed);
    }

    /// Answer every later request with the redirect `status` to `location`.
    pub fn redirect(&self, status: u16, location: &str) {
        if let Ok(mut kept) = self.shared.location.lock() {
            *kept = Some(location.to_string());
        }
        self.answer(status);
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}
