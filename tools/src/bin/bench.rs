//! `make bench`: measures the release binaries against a local Lambda Runtime API and the AWS
//! emulator, and writes BENCHMARKS.md. Per function: cold start (process start → first poll of
//! the Runtime API), warm latency per event, peak RSS, binary and zip size. And the interruption
//! critical path: sequential AWS rounds before the launch request, counted by the proxy. And a
//! node's drain: a 110-pod node of the fake Kubernetes API server, drained by the release binary.
//!
//! `make bench-profiles` (`bench <profile>=<dir>...`): the same per-function figures for the
//! binaries each cargo profile built, written into BENCHMARKS.md between the release-profile
//! markers. `make bench` keeps that section as it is: from its start marker to the next heading,
//! so a note written below the figures stays too.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use serde_json::Value;
use spotkeeper_tests::emulator::workspace_root;
use spotkeeper_tests::kube::{FakeKube, Options, PodSeed};
use spotkeeper_tests::runtime::{Function, binary};
use spotkeeper_tests::{Harness, TOKEN, events, mass, member_ids};

const COLD_STARTS: usize = 10;
/// Profiles differ by less than the noise of 10 starts: more starts, the profiles taken in turn.
const PROFILE_COLD_STARTS: usize = 30;
const WARM_EVENTS: usize = 50;

const SECTION_START: &str = "<!-- release-profile:start -->";
const SECTION_END: &str = "<!-- release-profile:end -->";
const BURST: &str = "## Burst";

/// A function and the event it is measured with.
struct Case {
    name: &'static str,
    event: &'static str,
    make: Box<dyn Fn() -> Value>,
}

struct Figures {
    cold: Vec<Duration>,
    warm: Vec<Duration>,
    peak_rss_kib: u64,
    binary: u64,
    zip: u64,
}

fn percentile(values: &[Duration], p: f64) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    // The nearest rank: `p` is in 0..=1, so the index is within the list.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(rank).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / 1048576.0)
}

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// The size of the binary zipped as Lambda takes it (named `bootstrap`).
fn zip_size(path: &Path) -> u64 {
    let out = std::env::temp_dir().join(format!("spotkeeper-bench-{}.zip", std::process::id()));
    let script = "import sys, zipfile\nwith zipfile.ZipFile(sys.argv[2], 'w', zipfile.ZIP_DEFLATED, compresslevel=9) as z: z.write(sys.argv[1], 'bootstrap')";
    let ok = Command::new("python3").args(["-c", script]).arg(path).arg(&out).status().is_ok_and(|s| s.success());
    let size = if ok { std::fs::metadata(&out).map_or(0, |m| m.len()) } else { 0 };
    let _ = std::fs::remove_file(&out);
    size
}

/// Where and when: "2 cores, x86_64, 2026-11-21".
fn machine() -> String {
    let nproc = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    format!("{nproc} cores, {}, {}", std::env::consts::ARCH, chrono::Utc::now().format("%Y-%m-%d"))
}

/// The 1-minute load average: the machine may be shared while measuring, and the figures say so.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// Measures `case` for each of `paths` (builds of one function): `starts` cold starts each, taken
/// in turn so that load on the machine falls on every build alike, then warm latency, peak RSS
/// and sizes.
async fn measure(
    env: &[(String, String)],
    case: &Case,
    paths: &[PathBuf],
    starts: usize,
) -> Result<Vec<Figures>, String> {
    let mut cold = vec![Vec::new(); paths.len()];
    for _ in 0..starts {
        for (path, times) in paths.iter().zip(&mut cold) {
            let mut f = Function::start_binary(case.name, path, env).await?;
            f.invoke((case.make)()).await?;
            times.push(f.cold_start().ok_or("no first poll")?);
        }
    }
    let mut figures = Vec::new();
    for (path, cold) in paths.iter().zip(cold) {
        let mut f = Function::start_binary(case.name, path, env).await?;
        f.invoke((case.make)()).await?;
        let mut warm = Vec::new();
        for _ in 0..WARM_EVENTS {
            let started = Instant::now();
            f.invoke((case.make)()).await?;
            warm.push(started.elapsed());
        }
        figures.push(Figures {
            cold,
            warm,
            peak_rss_kib: f.pid().map_or(0, peak_rss_kib),
            binary: std::fs::metadata(path).map_or(0, |m| m.len()),
            zip: zip_size(path),
        });
    }
    Ok(figures)
}

/// The emulator with two groups, the functions' environment, and a running standalone member.
async fn setup() -> Result<(Harness, Vec<(String, String)>, String), String> {
    let h = Harness::start().await;
    // The functions reach the emulator through the proxy, which counts their calls.
    let env: Vec<(String, String)> = h
        .function_env()
        .into_iter()
        .map(|(k, v)| if k == "AWS_ENDPOINT_URL" { (k, h.proxy.endpoint.clone()) } else { (k, v) })
        .chain([("SPOTKEEPER_API_TOKEN".to_string(), TOKEN.to_string()), ("RUST_LOG".to_string(), "warn".to_string())])
        .collect();
    let (_, web) = h.standalone("web").capacity(2).post().await;
    h.register_workers().await;
    let member = web["members"][0]["instance_id"].as_str().ok_or("no member")?.to_string();
    Ok((h, env, member))
}

fn cases(member: &str) -> Vec<Case> {
    let running = member.to_string();
    vec![
        Case {
            name: "api",
            event: "GET /groups (2 groups)",
            make: Box::new(|| events::http("GET", "/groups", Some(TOKEN), None)),
        },
        Case {
            name: "instance-state",
            event: "running, standalone member (DNS, address, volumes)",
            make: Box::new(move || events::state_change(&running, "running")),
        },
        Case {
            name: "spot-interruption",
            event: "warning, instance of no group",
            make: Box::new(|| events::spot_warning("i-0fffffffffffffff0")),
        },
        Case {
            name: "rebalance-recommendation",
            event: "recommendation, instance of no group",
            make: Box::new(|| events::rebalance("i-0fffffffffffffff0")),
        },
        Case {
            name: "scheduled-recovery",
            event: "scheduled run, 2 groups",
            make: Box::new(|| events::load("scheduled-event.json")),
        },
        Case {
            name: "node-drain",
            event: "warning, instance of no group",
            make: Box::new(|| events::spot_warning("i-0fffffffffffffff0")),
        },
        Case {
            name: "volume-threshold",
            event: "disk alarm, instance of no group",
            make: Box::new(|| events::disk_alarm("i-0fffffffffffffff0", "/data", "ext4", 90.0)),
        },
    ]
}

/// `make bench`: BENCHMARKS.md but for the release-profile section.
async fn bench() -> Result<String, String> {
    let (h, env, member) = setup().await?;
    let load_before = load_average();
    let cases = cases(&member);
    let mut figures = Vec::new();
    for case in &cases {
        figures.extend(measure(&env, case, &[binary(case.name)], COLD_STARTS).await?);
    }
    let load_after = load_average();

    // The critical path: a real replacement, its calls counted by the proxy.
    let mut spot = Function::start("spot-interruption", &env).await?;
    spot.invoke(events::spot_warning("i-0fffffffffffffff0")).await?;
    h.proxy.forget_calls();
    let started = Instant::now();
    let out = spot.invoke(events::spot_warning(&member)).await?;
    let replaced_in = started.elapsed();
    let calls = h.proxy.calls();
    let launch = calls.iter().position(|c| c.operation == "CreateFleet").ok_or(format!("no launch request: {out}"))?;
    let to_launch = calls[launch].at.duration_since(calls[0].at);
    let before: Vec<String> = calls[..launch].iter().map(|c| c.operation.clone()).collect();
    let rounds = h.proxy.rounds_before("CreateFleet").unwrap_or_default();

    let mut md = String::new();
    md.push_str("# Benchmarks\n\nProduced by `make bench` (release build; `tools/src/bin/bench.rs`), on this project's development machine: ");
    md.push_str(&format!("{}. ", machine()));
    md.push_str("The functions are the release binaries, run as Lambda runs them against a local Lambda Runtime API, with the AWS emulator (moto) behind a counting proxy on 127.0.0.1. Latencies include the emulator's own time, so they are upper bounds for the code; AWS round trips in a real region add their own.\n\n");
    md.push_str(&format!("## Per function\n\nCold start: process start → first poll of the Runtime API, {COLD_STARTS} starts. Warm: one event end to end, {WARM_EVENTS} events on one process. Load average (1 min) {load_before} at the start, {load_after} at the end, the benchmark's own processes included: on 2 cores, anything over 1 inflates the times.\n\n"));
    md.push_str("| function | event | cold start p50 / max (ms) | warm p50 / p95 (ms) | peak RSS (MiB) | binary (MiB) | zip (MiB) |\n|---|---|---|---|---|---|---|\n");
    for (case, f) in cases.iter().zip(&figures) {
        md.push_str(&format!(
            "| {} | {} | {} / {} | {} / {} | {} | {} | {} |\n",
            case.name,
            case.event,
            ms(percentile(&f.cold, 0.5)),
            ms(percentile(&f.cold, 1.0)),
            ms(percentile(&f.warm, 0.5)),
            ms(percentile(&f.warm, 0.95)),
            mib(f.peak_rss_kib * 1024),
            mib(f.binary),
            mib(f.zip),
        ));
    }
    md.push_str("\n## Interruption critical path\n\n");
    md.push_str(&format!(
        "A Spot interruption warning for a managed standalone member, on a warm function: the calls before the launch request were {} ({} sequential round{}), and the launch request (`CreateFleet`) left {} ms after the first call; the whole invocation (launch, records, alerts) took {} ms. The target: the launch request is the second round.\n",
        before.join(" + "),
        rounds,
        if rounds == 1 { "" } else { "s" },
        ms(to_launch),
        ms(replaced_in),
    ));
    md.push_str(&drain(&h, &env).await?);
    drop(h);

    // The burst: 1000 warnings at once under EC2's request rate limits, on a fleet of its own.
    let h = Harness::start().await;
    let (groups, burst) = mass::burst(&h).await?;
    mass::check(&h, &groups, &burst.dead).await?;
    md.push_str(&format!("\n{BURST}\n\n{}", burst.markdown()));
    Ok(md)
}

/// Pods on the drained node: the most an EKS node of this size takes (`--max-pods` 110).
const PODS: usize = 110;

/// A warned node with 110 pods (2 of DaemonSets, the rest plain, 1 s grace) in a cluster on real
/// time, drained by the release `node-drain` through its SQS shape: how soon it is cordoned, how
/// fast evictions go out, when the node is empty.
async fn drain(h: &Harness, env: &[(String, String)]) -> Result<String, String> {
    let fake = FakeKube::start_with(Options {
        clock: Some(std::sync::Arc::new(spotkeeper::clock::SystemClock)),
        ..Options::default()
    })
    .await;
    let workers = h.group("workers").await;
    let ids = member_ids(&workers);
    let id = ids.first().ok_or("workers has no member")?;
    let name = spotkeeper::domain::GroupName::try_from("workers".to_string())?;
    let mut group = h.deps.store.group(&name).await.map_err(|e| e.to_string())?.ok_or("no workers")?;
    let block = serde_json::json!({"cluster": fake.cluster, "endpoint": fake.url, "ca": fake.ca_pem});
    group.kubernetes = Some(serde_json::from_value(block).map_err(|e| e.to_string())?);
    h.deps.store.save_group(&group, &ids).await.map_err(|e| e.to_string())?;
    let node = "ip-10-0-1-10.ec2.internal";
    fake.node(node, "us-east-1a", id);
    fake.namespace("bench");
    for i in 0..PODS {
        let seed = PodSeed::new("bench", &format!("pod-{i}")).on(node);
        fake.pod(if i < 2 { seed.daemonset(&format!("ds-{i}")) } else { seed.replicaset("web") });
    }
    tokio::time::sleep(Duration::from_millis(50)).await;

    let mut function = Function::start("node-drain", env).await?;
    let started = Instant::now();
    let watch = async {
        let (mut cordoned, mut first, mut last) = (None, None, None);
        while last.is_none() {
            let log = fake.requests();
            let evictions = log.iter().filter(|r| r.uri.contains("/eviction")).count();
            if cordoned.is_none() && log.iter().any(|r| r.method == "PATCH") {
                cordoned = Some(started.elapsed());
            }
            if first.is_none() && evictions > 0 {
                first = Some(started.elapsed());
            }
            if evictions >= PODS - 2 {
                last = Some(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        (cordoned, first, last)
    };
    let batch = events::sqs_batch(&[events::spot_warning(id)]);
    let (answer, (cordoned, first, last)) = tokio::join!(function.invoke(batch), watch);
    let took = started.elapsed();
    answer?;
    let drain =
        h.deps.store.drain(&spotkeeper::domain::InstanceId::try_from(id.clone())?).await.map_err(|e| e.to_string())?;
    let tally = drain.ok_or("no drain recorded")?.tally;
    let (first, last) = (first.unwrap_or_default(), last.unwrap_or_default());
    let rate = (PODS - 2) as f64 / (last - first).as_secs_f64().max(0.001);
    Ok(format!(
        "\n## Node drain\n\nA Spot interruption warning (an SQS batch of one) for an EKS node with {PODS} pods (2 of DaemonSets, {} plain, 1 s grace), to the release `node-drain` with its cluster's endpoint and CA in the group: the fake API server (HTTPS, EKS tokens checked) on 127.0.0.1, real time. Cordoned {} ms after the invocation began (token minted, node found by its provider id); the first eviction at {} ms; {} evictions in {} ms ({rate:.0} a second: the client's burst of 100 lets most out at once, then its limit of 50 a second paces the rest); {} evicted in all, the node empty (only the DaemonSets' pods left) and the invocation answered at {} ms.\n",
        PODS - 2,
        ms(cordoned.unwrap_or_default()),
        ms(first),
        PODS - 2,
        ms(last - first),
        tally.evicted.len(),
        ms(took),
    ))
}

/// `make bench-profiles`: the release-profile section, markers included, for the binaries of
/// each `(profile, directory)`.
async fn bench_profiles(profiles: &[(String, PathBuf)]) -> Result<String, String> {
    let (_h, env, member) = setup().await?;
    let load_before = load_average();
    let cases = cases(&member);
    // figures[case][profile]
    let mut figures = Vec::new();
    for case in &cases {
        let paths: Vec<PathBuf> = profiles.iter().map(|(_, dir)| dir.join(case.name)).collect();
        figures.push(measure(&env, case, &paths, PROFILE_COLD_STARTS).await?);
    }
    let load_after = load_average();

    let names: Vec<&str> = profiles.iter().map(|(name, _)| name.as_str()).collect();
    let mut md = format!("{SECTION_START}\n## Release profile\n\n");
    md.push_str(&format!(
        "Produced by `make bench-profiles` (`tools/src/bin/bench.rs`), {}: the function binaries built by `cargo build --profile <profile> --workspace --bins` for each of {} (`release` and profiles in Cargo.toml that inherit from it with another `opt-level`), measured as above with the same events. Cold start: {PROFILE_COLD_STARTS} starts per function and profile, the profiles taken in turn so that load on the machine falls on each alike. Load average (1 min) {load_before} at the start, {load_after} at the end, the benchmark's own processes included.\n\n",
        machine(),
        names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "),
    ));
    md.push_str("| profile | cold start p50 / max (ms), all functions | spot-interruption warm p50 (ms) | peak RSS (MiB) | binaries, total (MiB) | zips, total (MiB) |\n|---|---|---|---|---|---|\n");
    for (i, name) in names.iter().enumerate() {
        let of_profile: Vec<&Figures> = figures.iter().map(|f| &f[i]).collect();
        let cold: Vec<Duration> = of_profile.iter().flat_map(|f| f.cold.iter().copied()).collect();
        let spot_warm = cases
            .iter()
            .zip(&of_profile)
            .find(|(case, _)| case.name == "spot-interruption")
            .map_or_else(|| "?".into(), |(_, f)| ms(percentile(&f.warm, 0.5)));
        let rss = of_profile.iter().map(|f| f.peak_rss_kib * 1024);
        md.push_str(&format!(
            "| {name} | {} / {} | {spot_warm} | {}–{} | {} | {} |\n",
            ms(percentile(&cold, 0.5)),
            ms(percentile(&cold, 1.0)),
            mib(rss.clone().min().unwrap_or(0)),
            mib(rss.max().unwrap_or(0)),
            mib(of_profile.iter().map(|f| f.binary).sum()),
            mib(of_profile.iter().map(|f| f.zip).sum()),
        ));
    }
    md.push_str(&format!("\nPer function, each cell {}:\n\n", names.join(" / ")));
    md.push_str("| function | cold start p50 (ms) | cold start max (ms) | warm p50 (ms) | peak RSS (MiB) | binary (MiB) | zip (MiB) |\n|---|---|---|---|---|---|---|\n");
    for (case, per_profile) in cases.iter().zip(&figures) {
        let cell = |figure: &dyn Fn(&Figures) -> String| per_profile.iter().map(figure).collect::<Vec<_>>().join(" / ");
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            case.name,
            cell(&|f| ms(percentile(&f.cold, 0.5))),
            cell(&|f| ms(percentile(&f.cold, 1.0))),
            cell(&|f| ms(percentile(&f.warm, 0.5))),
            cell(&|f| mib(f.peak_rss_kib * 1024)),
            cell(&|f| mib(f.binary)),
            cell(&|f| mib(f.zip)),
        ));
    }
    md.push_str(SECTION_END);
    Ok(md)
}

/// The release-profile section of `md`: from its start marker to the next heading.
fn release_section(md: &str) -> Option<&str> {
    let start = md.find(SECTION_START)?;
    let end = start + md[start..].find(SECTION_END)? + SECTION_END.len();
    let stop = md[end..].find("\n## ").map_or(md.len(), |i| end + i + 1);
    Some(md[start..stop].trim_end())
}

/// `md` with `section` before the burst figures (at the end without them).
fn with_section(md: &str, section: &str) -> String {
    match md.find(BURST) {
        Some(i) => format!("{}{section}\n\n{}", &md[..i], &md[i..]),
        None => format!("{}\n\n{section}\n", md.trim_end()),
    }
}

/// `md` with `section` (markers included) in place of the one between its markers.
fn put_section(md: &str, section: &str) -> String {
    match (md.find(SECTION_START), md.find(SECTION_END)) {
        (Some(start), Some(end)) if start < end => {
            format!("{}{section}{}", &md[..start], &md[end + SECTION_END.len()..])
        }
        _ => with_section(md, section),
    }
}

/// `profile=directory` arguments: the profiles to compare, none for `make bench`.
fn profile_args() -> Result<Vec<(String, PathBuf)>, String> {
    std::env::args()
        .skip(1)
        .map(|arg| match arg.split_once('=') {
            Some((name, dir)) if !name.is_empty() && !dir.is_empty() => Ok((name.to_string(), PathBuf::from(dir))),
            _ => Err(format!("expected <profile>=<directory of its binaries>, got {arg:?}")),
        })
        .collect()
}

async fn run(path: &Path) -> Result<(), String> {
    let profiles = profile_args()?;
    let existing = || std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()));
    let md = if profiles.is_empty() {
        let md = bench().await?;
        println!("{md}");
        // A first run has no BENCHMARKS.md to keep a section of.
        match existing().ok().as_deref().and_then(release_section) {
            Some(section) => with_section(&md, section),
            None => md,
        }
    } else {
        let section = bench_profiles(&profiles).await?;
        println!("{section}");
        put_section(&existing()?, &section)
    };
    std::fs::write(path, md).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[tokio::main]
async fn main() -> ExitCode {
    let path = workspace_root().join("BENCHMARKS.md");
    match run(&path).await {
        Ok(()) => {
            println!("written to {}", path.display());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("bench failed: {err}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BENCH: &str = "# Benchmarks\n\nintro\n\n## Per function\n\ntable\n\n## Burst\n\nburst\n";

    fn section(figures: &str) -> String {
        format!("{SECTION_START}\n## Release profile\n\n{figures}\n{SECTION_END}")
    }

    #[test]
    fn a_first_section_goes_before_not_measured_yet() {
        let md = put_section(BENCH, &section("old"));
        assert_eq!(
            md,
            format!("# Benchmarks\n\nintro\n\n## Per function\n\ntable\n\n{}\n\n## Burst\n\nburst\n", section("old"))
        );
    }

    #[test]
    fn new_figures_keep_the_note_below_them() {
        let md = put_section(BENCH, &format!("{}\n\nWhy opt-level 3.", section("old")));
        let md = put_section(&md, &section("new"));
        assert_eq!(md, put_section(BENCH, &format!("{}\n\nWhy opt-level 3.", section("new"))));
    }

    #[test]
    fn make_bench_keeps_the_section_and_its_note() {
        let with_note = put_section(BENCH, &format!("{}\n\nWhy opt-level 3.", section("figures")));
        let kept = release_section(&with_note);
        assert_eq!(kept, Some(format!("{}\n\nWhy opt-level 3.", section("figures")).as_str()));
        let rewritten = with_section(&BENCH.replace("table", "new table"), kept.unwrap_or_default());
        assert_eq!(rewritten, with_note.replace("table", "new table"));
        assert_eq!(release_section(BENCH), None);
    }
}
