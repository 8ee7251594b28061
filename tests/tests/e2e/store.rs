//! The fleet table's guarantees, against the emulator.

use spotkeeper::adapters::store::StoreError;
use spotkeeper::domain::{AsgSpec, Group, GroupKind, GroupName};
use spotkeeper::fixtures::member;
use spotkeeper_tests::Harness;

fn group(name: &str) -> Group {
    Group::new(
        GroupName::try_from(name.to_string()).unwrap(),
        GroupKind::Asg(AsgSpec { asg_name: "workers".into() }),
        chrono::Utc::now(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_racing_on_one_group_one_wins_the_other_is_told() {
    let h = Harness::start().await;
    let store = &h.deps.store;
    store.create_group(&group("workers")).await.unwrap();
    let read = store.group(&group("workers").name).await.unwrap().unwrap();

    // Both writers read version 0 and write at once.
    let mut first = read.clone();
    first.kind = GroupKind::Asg(AsgSpec { asg_name: "first".into() });
    let mut second = read.clone();
    second.kind = GroupKind::Asg(AsgSpec { asg_name: "second".into() });
    let (a, b) = tokio::join!(store.save_group(&first, &[]), store.save_group(&second, &[]));
    let (won, lost) = match (a, b) {
        (Ok(won), Err(lost)) | (Err(lost), Ok(won)) => (won, lost),
        other => panic!("exactly one write must win: {other:?}"),
    };
    assert!(matches!(&lost, StoreError::Conflict(m) if m.contains("workers")), "{lost}");
    assert!(lost.to_string().contains("retry"), "the loser is told what to do: {lost}");
    assert_eq!(won.version, 1);
    let stored = store.group(&read.name).await.unwrap().unwrap();
    assert_eq!(stored, won, "the winner's write is the one stored, not overwritten");

    // The loser reads again and its retry succeeds on the new version.
    let mut retry = stored.clone();
    retry.kind = GroupKind::Asg(AsgSpec { asg_name: "retried".into() });
    assert_eq!(store.save_group(&retry, &[]).await.unwrap().version, 2);

    // A second group of the same name is refused, not overwritten.
    assert!(matches!(store.create_group(&group("workers")).await, Err(StoreError::Conflict(_))));
    assert_eq!(store.group(&read.name).await.unwrap().unwrap().version, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_belongs_to_one_group_only() {
    let h = Harness::start().await;
    let store = &h.deps.store;
    let (a, b) = (group("a"), group("b"));
    store.create_group(&a).await.unwrap();
    store.create_group(&b).await.unwrap();
    store.add_members(&a, &[member("i-1"), member("i-2")]).await.unwrap();
    let err = store.add_members(&b, &[member("i-3"), member("i-2")]).await.unwrap_err();
    assert!(matches!(&err, StoreError::Conflict(m) if m.contains("i-2")), "{err}");
    // The transaction wrote nothing of that batch, i-3 included.
    assert!(store.members(&b.name).await.unwrap().is_empty());
    assert_eq!(store.group_of("i-3").await.unwrap(), None);
    assert_eq!(store.group_of("i-2").await.unwrap(), Some(a.name.clone()));
}
