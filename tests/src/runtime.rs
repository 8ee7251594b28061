//! A local Lambda Runtime API, so that the real function binaries run here as they run in AWS:
//! the binary polls `/runtime/invocation/next`, handles the event, posts the response or error.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::Value;
use tokio::process::{Child, Command};
use tokio::sync::{Notify, oneshot};

use crate::emulator::workspace_root;

type Reply = Result<Value, String>;

#[derive(Default)]
struct Shared {
    queue: Mutex<VecDeque<(String, Value)>>,
    arrived: Notify,
    waiting: Mutex<HashMap<String, oneshot::Sender<Reply>>>,
    first_poll: OnceLock<Instant>,
    next_id: Mutex<u64>,
}

/// One function binary, running against its own local Runtime API.
pub struct Function {
    name: String,
    child: Child,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
    started: Instant,
    log: PathBuf,
}

/// Where `cargo build` put the function binaries.
pub fn binary(name: &str) -> PathBuf {
    let dir = std::env::var_os("SPOTKEEPER_BIN_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("CARGO_TARGET_DIR").map(|d| PathBuf::from(d).join("debug")))
        .unwrap_or_else(|| workspace_root().join("target/debug"));
    dir.join(name)
}

async fn next(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    shared.first_poll.get_or_init(Instant::now);
    loop {
        let notified = shared.arrived.notified();
        if let Some((id, event)) = shared.queue.lock().ok().and_then(|mut q| q.pop_front()) {
            let deadline = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default() + Duration::from_secs(60);
            let mut headers = HeaderMap::new();
            let set = |headers: &mut HeaderMap, k: &'static str, v: String| {
                if let Ok(v) = HeaderValue::from_str(&v) {
                    headers.insert(k, v);
                }
            };
            set(&mut headers, "lambda-runtime-aws-request-id", id);
            set(&mut headers, "lambda-runtime-deadline-ms", deadline.as_millis().to_string());
            set(
                &mut headers,
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:us-east-1:123456789012:function:local".into(),
            );
            set(&mut headers, "lambda-runtime-trace-id", "Root=1-00000000-000000000000000000000000".into());
            return (StatusCode::OK, headers, event.to_string());
        }
        notified.await;
    }
}

fn finish(shared: &Shared, id: &str, reply: Reply) -> StatusCode {
    match shared.waiting.lock().ok().and_then(|mut w| w.remove(id)) {
        Some(waiter) => {
            let _ = waiter.send(reply);
            StatusCode::ACCEPTED
        }
        None => StatusCode::BAD_REQUEST,
    }
}

async fn response(State(shared): State<Arc<Shared>>, UrlPath(id): UrlPath<String>, body: Bytes) -> StatusCode {
    let value = serde_json::from_slice(&body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into()));
    finish(&shared, &id, Ok(value))
}

async fn error(State(shared): State<Arc<Shared>>, UrlPath(id): UrlPath<String>, body: Bytes) -> StatusCode {
    finish(&shared, &id, Err(String::from_utf8_lossy(&body).into()))
}

impl Function {
    /// Starts `name`'s binary with `env` (and nothing else of this process's environment but PATH).
    pub async fn start(name: &str, env: &[(String, String)]) -> Result<Self, String> {
        Self::start_binary(name, &binary(name), env).await
    }

    pub async fn start_binary(name: &str, path: &Path, env: &[(String, String)]) -> Result<Self, String> {
        if !path.exists() {
            return Err(format!(
                "{} is not built: run `cargo build --workspace --bins` (make test does)",
                path.display()
            ));
        }
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
        let address = listener.local_addr().map_err(|e| e.to_string())?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let log = std::env::temp_dir().join(format!("spotkeeper-{name}-{}.log", address.port()));
        let log_file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let err_file = log_file.try_clone().map_err(|e| e.to_string())?;
        let started = Instant::now();
        let child = Command::new(path)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", address.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(err_file)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", path.display()))?;
        Ok(Self { name: name.to_string(), child, shared, server, started, log })
    }

    /// Invokes the function with `event` and waits for its answer. An error answer, or the
    /// process exiting (as it does when init fails), is an `Err` with what it said.
    pub async fn invoke(&mut self, event: Value) -> Result<Value, String> {
        let id = {
            let mut next = self.shared.next_id.lock().map_err(|e| e.to_string())?;
            *next += 1;
            format!("{}-{next}", self.name)
        };
        let (tx, rx) = oneshot::channel();
        self.shared.waiting.lock().map_err(|e| e.to_string())?.insert(id.clone(), tx);
        self.shared.queue.lock().map_err(|e| e.to_string())?.push_back((id, event));
        self.shared.arrived.notify_waiters();
        tokio::select! {
            reply = rx => reply.map_err(|e| e.to_string())?,
            status = self.child.wait() => Err(format!(
                "{} exited ({}) before answering: {}",
                self.name,
                status.map(|s| s.to_string()).unwrap_or_default(),
                self.output()
            )),
            () = tokio::time::sleep(Duration::from_secs(60)) => Err(format!("{} did not answer within 60 s", self.name)),
        }
    }

    /// How long from process start to its first poll for work: the cold start.
    pub fn cold_start(&self) -> Option<Duration> {
        self.shared.first_poll.get().map(|t| t.duration_since(self.started))
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// What the function printed (its logs).
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        self.server.abort();
        let _ = std::fs::remove_file(&self.log);
    }
}
