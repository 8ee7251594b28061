//! The local AWS emulator: moto in server mode on a port of 127.0.0.1, stopped on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;

pub struct Emulator {
    child: Child,
    pub endpoint: String,
    pub log: PathBuf,
}

/// The workspace root (where template.yaml and events/ live).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The line the launcher prints once it listens, followed by its address.
const LISTENING: &str = "moto listening on ";

impl Emulator {
    /// Starts moto (through `tests/emulator/moto_server.py`, which repairs two of its
    /// concurrency faults) on a port of 127.0.0.1 the system picks, and waits until it says which.
    /// Panics with a clear message when it cannot.
    pub fn start() -> Self {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, Ordering::Relaxed);
        let log = std::env::temp_dir().join(format!("spotkeeper-moto-{}-{n}.log", std::process::id()));
        let log_file = std::fs::File::create(&log).expect("a log file for moto");
        let err_file = log_file.try_clone().expect("a log file for moto");
        let venv = workspace_root().join(".venv/bin/python3");
        let python = if venv.exists() { venv } else { PathBuf::from("python3") };
        let child = Command::new(&python)
            .arg(workspace_root().join("tests/emulator/moto_server.py"))
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(err_file)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {} ({e}): run `make test`, which installs moto into .venv", python.display())
            });
        let mut emulator = Self { child, endpoint: String::new(), log };
        match emulator.wait_listening() {
            Some(endpoint) => emulator.endpoint = endpoint,
            None => panic!("moto did not start; its log: {}", emulator.log.display()),
        }
        emulator
    }

    fn wait_listening(&mut self) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return None;
            }
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(endpoint) = text.lines().find_map(|l| l.strip_prefix(LISTENING)) {
                return Some(endpoint.trim().to_string());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SDK configuration pointing every client at the emulator, with the SDK's standard retry as
    /// in AWS (3 attempts, backoff with jitter): moto's threaded server now and then answers a
    /// request that races another with a 500, which the SDK rightly retries.
    pub fn sdk_config(&self) -> SdkConfig {
        sdk_config_at(&self.endpoint)
    }
}

/// SDK configuration for an emulator (or a proxy in front of it) at `endpoint`.
pub fn sdk_config_at(endpoint: &str) -> SdkConfig {
    {
        SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .credentials_provider(aws_sdk_dynamodb::config::SharedCredentialsProvider::new(Credentials::new(
                "testing",
                "testing",
                None,
                None,
                "spotkeeper-tests",
            )))
            .retry_config(RetryConfig::standard().with_max_attempts(3))
            .build()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failed test keeps the emulator's log: an operation it lacks shows there as a 500.
        if std::thread::panicking() {
            eprintln!("the emulator's log is kept at {}", self.log.display());
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}
