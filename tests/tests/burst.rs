//! A mass interruption: 1000 warnings across 20 pools at once, under EC2's request rate limits.
//! Standalone groups get their replacements in as few launch requests as the API allows (one
//! fleet request carries every replacement of a group in a batch), Auto Scaling members are
//! detached 20 a call, and no request fails for throttling in the end: the SDK's retries wait
//! their turn.

use spotkeeper_tests::{Harness, mass};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_warnings_across_twenty_pools_are_handled_under_ec2_rate_limits() {
    spotkeeper_tests::announce("burst: 1000 warnings across 20 pools", "a few minutes");
    let h = Harness::start().await;
    let (groups, burst) = mass::burst(&h).await.unwrap_or_else(|e| panic!("{e}"));
    println!("{burst:?}");
    assert_eq!(burst.warnings, 1000);
    assert_eq!(burst.pools, 20);
    assert!(burst.dead.is_empty(), "dead-lettered: {}", burst.dead.len());
    assert_eq!(burst.redeliveries, 0, "nothing failed, throttled or not");
    let handled = mass::check(&h, &groups, &[]).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((handled.replaced, handled.detached), (500, 500), "{handled:?}");

    // One fleet request per standalone group per batch: every try beyond those was a throttled one.
    let standalone = groups.iter().filter(|g| g.asg.is_none()).count();
    assert_eq!(burst.launch_calls - burst.launches_throttled, burst.invocations * standalone, "{burst:?}");
    // 20 ids a detach: each batch holds 1000 / invocations warnings per 10 groups.
    let per_group = (burst.warnings / burst.invocations).div_ceil(groups.len());
    assert_eq!(burst.detach_calls, burst.invocations * (groups.len() - standalone) * per_group.div_ceil(20));
}
