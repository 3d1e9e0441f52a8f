//! Coordinator scenarios driven directly, with an in-memory log and a manual clock.

use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::*;

type Records = Vec<KeyValue>;

#[derive(Default)]
struct MemoryLog {
    partitions: Mutex<Vec<Records>>,
    /// A partition whose replay fails, as an offline log's would.
    unreadable: Mutex<Option<usize>>,
}

impl MemoryLog {
    fn new(partitions: usize) -> Arc<MemoryLog> {
        Arc::new(MemoryLog {
            partitions: Mutex::new(vec![Vec::new(); partitions]),
            unreadable: Mutex::new(None),
        })
    }
}

impl CoordinatorLog for MemoryLog {
    fn partitions(&self) -> usize {
        self.partitions.lock().unwrap().len()
    }
    fn append(
        &self,
        partition: usize,
        records: &[KeyValue],
        _transaction: Option<(i64, i16)>,
    ) -> Result<DurableFuture, String> {
        self.partitions.lock().unwrap()[partition].extend_from_slice(records);
        Ok(Box::pin(async { Ok(()) }))
    }
    fn replay(&self, partition: usize, visit: &mut RecordVisitor<'_>) -> Result<(), String> {
        if *self.unreadable.lock().unwrap() == Some(partition) {
            return Err("the partition is offline".into());
        }
        for (key, value) in &self.partitions.lock().unwrap()[partition] {
            visit(LogEvent::Record {
                key,
                value: value.as_deref(),
                transactional_producer: None,
            });
        }
        Ok(())
    }
}

fn config() -> GroupConfig {
    GroupConfig {
        initial_rebalance_delay_ms: 0,
        ..GroupConfig::default()
    }
}

fn coordinator(log: &Arc<MemoryLog>) -> GroupCoordinator {
    GroupCoordinator::new(config(), Arc::clone(log) as Arc<dyn CoordinatorLog>)
}

fn join_request(member_id: &str, instance: Option<&str>, protocols: &[&str]) -> JoinRequest {
    JoinRequest {
        group_id: "g".into(),
        member_id: member_id.into(),
        group_instance_id: instance.map(str::to_string),
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 20_000,
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|p| (p.to_string(), Bytes::from(p.to_string())))
            .collect(),
        require_known_member_id: true,
        supports_skip_assignment: false,
    }
}

fn now<T: std::fmt::Debug>(reply: Reply<T>) -> T {
    match reply {
        Reply::Now(value) => value,
        Reply::Wait(_) => panic!("expected an immediate answer"),
    }
}

fn parked<T>(reply: Reply<T>) -> tokio::sync::oneshot::Receiver<T> {
    match reply {
        Reply::Wait(receiver) => receiver,
        Reply::Now(_) => panic!("expected the request to wait"),
    }
}

/// Joins a dynamic member through the KIP-394 round trip; returns its id and parked join.
fn join_new(
    c: &GroupCoordinator,
    t: i64,
) -> (String, tokio::sync::oneshot::Receiver<JoinResponse>) {
    let first = now(c.join(join_request("", None, &["range"]), t));
    assert_eq!(first.error, Some(GroupError::MemberIdRequired));
    let id = first.member_id;
    (
        id.clone(),
        parked(c.join(join_request(&id, None, &["range"]), t)),
    )
}

fn sync(
    c: &GroupCoordinator,
    member: &str,
    generation: i32,
    assignments: &[(&str, &str)],
    t: i64,
) -> Reply<SyncResponse> {
    c.sync(
        SyncRequest {
            group_id: "g".into(),
            member_id: member.into(),
            group_instance_id: None,
            generation_id: generation,
            protocol_type: None,
            protocol_name: None,
            assignments: assignments
                .iter()
                .map(|(m, a)| (m.to_string(), Bytes::from(a.to_string())))
                .collect(),
        },
        t,
    )
}

#[test]
fn two_members_join_sync_and_become_stable() {
    let log = MemoryLog::new(4);
    let c = coordinator(&log);
    let (a, mut join_a) = join_new(&c, 0);
    // The first join completes as soon as all members have joined (no initial delay here).
    let ra = join_a.try_recv().unwrap();
    assert_eq!(ra.generation_id, 1);
    assert_eq!(ra.leader_id, a);
    let (b, mut join_b) = join_new(&c, 10);
    // b's join starts a rebalance; a must rejoin before it completes.
    assert!(join_b.try_recv().is_err());
    assert_eq!(
        c.heartbeat("g", &a, None, 1, 20),
        Err(GroupError::RebalanceInProgress)
    );
    let mut rejoin_a = parked(c.join(join_request(&a, None, &["range"]), 30));
    let ra = rejoin_a.try_recv().unwrap();
    let rb = join_b.try_recv().unwrap();
    assert_eq!((ra.generation_id, rb.generation_id), (2, 2));
    assert_eq!(ra.protocol_name.as_deref(), Some("range"));
    assert_eq!(ra.members.len(), 2, "the leader sees every member");
    assert!(rb.members.is_empty(), "followers see none");
    let mut sync_b = parked(sync(&c, &b, 2, &[], 40));
    let mut sync_a = parked(sync(&c, &a, 2, &[(&a, "p0"), (&b, "p1")], 50));
    assert_eq!(sync_a.try_recv().unwrap().assignment, Bytes::from("p0"));
    assert_eq!(sync_b.try_recv().unwrap().assignment, Bytes::from("p1"));
    assert_eq!(c.heartbeat("g", &b, None, 2, 60), Ok(()));
    assert_eq!(
        c.heartbeat("g", &b, None, 1, 60),
        Err(GroupError::IllegalGeneration)
    );
    assert_eq!(c.describe(&["g".into()])[0].state, "Stable");
}

#[test]
fn an_expired_session_triggers_a_rebalance_without_the_dead_member() {
    let log = MemoryLog::new(1);
    let c = coordinator(&log);
    let (a, _) = join_new(&c, 0);
    let (b, mut join_b) = join_new(&c, 0);
    let mut rejoin_a = parked(c.join(join_request(&a, None, &["range"]), 0));
    rejoin_a.try_recv().unwrap();
    join_b.try_recv().unwrap();
    parked(sync(&c, &a, 2, &[], 0));
    // Only a keeps heartbeating; b's 10 s session runs out.
    for t in (1_000..=12_000).step_by(1_000) {
        let _ = c.heartbeat("g", &a, None, 2, t);
        c.tick(t);
    }
    let described = c.describe(&["g".into()]);
    assert_eq!(described[0].members.len(), 1);
    assert_eq!(described[0].members[0].member_id, a);
    assert_eq!(described[0].state, "PreparingRebalance");
    assert_eq!(
        c.heartbeat("g", &b, None, 2, 12_000),
        Err(GroupError::UnknownMemberId)
    );
}

#[test]
fn a_restarted_static_member_gets_its_assignment_back_without_rebalance() {
    let log = MemoryLog::new(1);
    let c = coordinator(&log);
    let mut first = parked(c.join(join_request("", Some("inst-1"), &["range"]), 0));
    let old = first.try_recv().unwrap().member_id;
    let mut s = parked(sync(&c, &old, 1, &[(&old, "mine")], 0));
    s.try_recv().unwrap();
    // Restart: same instance id, no member id, same protocols.
    let again = now(c.join(join_request("", Some("inst-1"), &["range"]), 100));
    assert_eq!(again.error, None);
    assert_eq!(again.generation_id, 1, "no new generation");
    let new = again.member_id;
    assert_ne!(new, old);
    let assignment = now(sync(&c, &new, 1, &[], 200)).assignment;
    assert_eq!(assignment, Bytes::from("mine"));
    // The old incarnation is fenced.
    assert_eq!(
        c.heartbeat("g", &old, Some("inst-1"), 1, 300),
        Err(GroupError::FencedInstanceId)
    );
    assert_eq!(c.describe(&["g".into()])[0].state, "Stable");
}

#[test]
fn commits_follow_kafkas_generation_rules() {
    let log = MemoryLog::new(2);
    let c = coordinator(&log);
    let exists = |_: &str, p: i32| p < 3;
    let commit = |member: &str, generation: i32, offset: i64| CommitRequest {
        group_id: "g".into(),
        member_id: member.into(),
        group_instance_id: None,
        generation_id: generation,
        unknown_group_is_not_found: false,
        offsets: vec![OffsetToCommit {
            topic: "t".into(),
            partition: 0,
            offset,
            leader_epoch: -1,
            metadata: Some("m".into()),
        }],
    };
    // Outside the protocol on an unknown group: creates a simple group.
    let outcome = c.commit_offsets(commit("", -1, 5), &exists, 0).unwrap();
    assert_eq!(outcome.results[0].2, None);
    assert_eq!(c.fetch_offsets("g", None)[0].offset, 5);
    let (a, mut join_a) = join_new(&c, 0);
    join_a.try_recv().unwrap();
    // CompletingRebalance: retry later.
    assert!(matches!(
        c.commit_offsets(commit(&a, 1, 6), &exists, 0),
        Err(GroupError::RebalanceInProgress)
    ));
    parked(sync(&c, &a, 1, &[], 0));
    assert!(c.commit_offsets(commit(&a, 1, 7), &exists, 0).is_ok());
    assert!(matches!(
        c.commit_offsets(commit(&a, 0, 8), &exists, 0),
        Err(GroupError::IllegalGeneration)
    ));
    assert!(matches!(
        c.commit_offsets(commit("ghost", 1, 8), &exists, 0),
        Err(GroupError::UnknownMemberId)
    ));
    // An admin client's commit (no member, generation -1) while the group has members.
    assert!(matches!(
        c.commit_offsets(commit("", -1, 8), &exists, 0),
        Err(GroupError::UnknownMemberId)
    ));
    // A new member arrives: PreparingRebalance, and a's commit for the current
    // generation is still accepted (cooperative members keep working).
    let _ = join_new(&c, 0);
    assert!(c.commit_offsets(commit(&a, 1, 9), &exists, 0).is_ok());
    assert_eq!(
        c.fetch_offsets("g", Some(&[("t".into(), vec![0, 1])]))[0].offset,
        9
    );
    assert_eq!(
        c.fetch_offsets("g", Some(&[("t".into(), vec![0, 1])]))[1].offset,
        -1
    );
    let mut unknown = commit("", -1, 1);
    unknown.group_id = "other".into();
    unknown.offsets[0].partition = 99;
    let outcome = c.commit_offsets(unknown, &exists, 0).unwrap();
    assert_eq!(
        outcome.results[0].2,
        Some(GroupError::UnknownTopicOrPartition)
    );
}

#[test]
fn state_survives_a_reload_from_the_log() {
    let log = MemoryLog::new(3);
    let c = coordinator(&log);
    let (a, mut join_a) = join_new(&c, 0);
    join_a.try_recv().unwrap();
    parked(sync(&c, &a, 1, &[(&a, "assigned")], 0))
        .try_recv()
        .unwrap();
    let commit = CommitRequest {
        group_id: "g".into(),
        member_id: a.clone(),
        group_instance_id: None,
        generation_id: 1,
        unknown_group_is_not_found: false,
        offsets: vec![OffsetToCommit {
            topic: "t".into(),
            partition: 2,
            offset: 42,
            leader_epoch: 0,
            metadata: Some("meta\0data".into()),
        }],
    };
    c.commit_offsets(commit, &|_, _| true, 0).unwrap();
    let reloaded = coordinator(&log);
    reloaded.load(1_000);
    let fetched = reloaded.fetch_offsets("g", None);
    assert_eq!(fetched[0].offset, 42);
    assert_eq!(fetched[0].metadata, "meta\0data");
    // The member continues in the same generation without rejoining.
    assert_eq!(reloaded.heartbeat("g", &a, None, 1, 1_000), Ok(()));
    assert_eq!(
        now(sync(&reloaded, &a, 1, &[], 1_000)).assignment,
        Bytes::from("assigned")
    );
}

#[test]
fn offsets_of_an_empty_group_expire_after_retention() {
    let log = MemoryLog::new(1);
    let mut cfg = config();
    cfg.offsets_retention_ms = 1_000;
    cfg.offsets_retention_check_interval_ms = 100;
    let c = GroupCoordinator::new(cfg, Arc::clone(&log) as Arc<dyn CoordinatorLog>);
    c.commit_offsets(commit_outside_protocol("g", 1), &|_, _| true, 0)
        .unwrap();
    c.tick(500);
    assert_eq!(c.fetch_offsets("g", None).len(), 1);
    c.tick(1_200);
    assert!(c.fetch_offsets("g", None).is_empty());
    assert!(
        c.list(&[]).is_empty(),
        "a group with nothing left is deleted"
    );
    let reloaded = coordinator(&log);
    reloaded.load(2_000);
    assert!(
        reloaded.fetch_offsets("g", None).is_empty(),
        "tombstones were written"
    );
}

#[test]
fn initial_rebalance_delay_waits_for_more_members() {
    let log = MemoryLog::new(1);
    let mut cfg = config();
    cfg.initial_rebalance_delay_ms = 3_000;
    let c = GroupCoordinator::new(cfg, Arc::clone(&log) as Arc<dyn CoordinatorLog>);
    let (_, mut join_a) = join_new(&c, 0);
    c.tick(2_000);
    assert!(join_a.try_recv().is_err(), "still inside the initial delay");
    let (_, mut join_b) = join_new(&c, 2_500);
    c.tick(4_000);
    assert!(
        join_a.try_recv().is_err(),
        "the delay was extended by the new member"
    );
    c.tick(5_600);
    assert_eq!(join_a.try_recv().unwrap().generation_id, 1);
    assert_eq!(join_b.try_recv().unwrap().generation_id, 1);
}

#[test]
fn leave_removes_members_and_an_empty_group_can_be_deleted() {
    let log = MemoryLog::new(1);
    let c = coordinator(&log);
    let (a, mut join_a) = join_new(&c, 0);
    join_a.try_recv().unwrap();
    parked(sync(&c, &a, 1, &[], 0));
    assert_eq!(
        c.delete_groups(&["g".into()], 0),
        vec![Some(GroupError::NonEmptyGroup)]
    );
    let results = c
        .leave(
            "g",
            &[
                LeavingMember {
                    member_id: a.clone(),
                    group_instance_id: None,
                },
                LeavingMember {
                    member_id: "ghost".into(),
                    group_instance_id: None,
                },
            ],
            0,
        )
        .unwrap();
    assert_eq!(results, vec![None, Some(GroupError::UnknownMemberId)]);
    assert_eq!(c.describe(&["g".into()])[0].state, "Empty");
    assert_eq!(c.delete_groups(&["g".into()], 0), vec![None]);
    assert_eq!(c.describe(&["g".into()])[0].state, "Dead");
}

#[test]
fn a_partition_that_cannot_be_loaded_makes_only_its_groups_unavailable() {
    let log = MemoryLog::new(4);
    let c = coordinator(&log);
    let commit = |group: &str| commit_outside_protocol(group, 7);
    // Two groups in different __consumer_offsets partitions.
    let groups: Vec<String> = (0..40).map(|i| format!("group-{i}")).collect();
    let first = &groups[0];
    let broken = records::partition_for(first, 4);
    let other = groups
        .iter()
        .find(|g| records::partition_for(g, 4) != broken)
        .unwrap();
    for group in [first, other] {
        c.commit_offsets(commit(group), &|_, _| true, 0).unwrap();
    }
    *log.unreadable.lock().unwrap() = Some(broken);
    let reloaded = coordinator(&log);
    reloaded.load(1_000);
    assert!(!reloaded.is_available(first));
    assert_eq!(
        reloaded
            .commit_offsets(commit(first), &|_, _| true, 1_000)
            .err(),
        Some(GroupError::CoordinatorNotAvailable)
    );
    assert!(matches!(
        now(reloaded.join(join_request_for(first), 1_000)).error,
        Some(GroupError::CoordinatorNotAvailable)
    ));
    assert!(reloaded.is_available(other));
    assert_eq!(reloaded.fetch_offsets(other, None)[0].offset, 7);
}

#[test]
fn committed_offsets_are_listed_for_a_bounded_number_of_groups() {
    let log = MemoryLog::new(1);
    let c = coordinator(&log);
    for (group, offset) in [("c", 3), ("a", 1), ("b", 2)] {
        c.commit_offsets(commit_outside_protocol(group, offset), &|_, _| true, 0)
            .unwrap();
    }
    let _joining = c.join(join_request_for("no-offsets"), 0);
    let all = c.committed_offsets(10);
    assert_eq!(all.groups_left_out, 0);
    let expected: Vec<GroupOffsets> = [("a", 1), ("b", 2), ("c", 3)]
        .into_iter()
        .map(|(group, offset)| GroupOffsets {
            group_id: group.to_string(),
            offsets: vec![("t".to_string(), 0, offset)],
        })
        .collect();
    assert_eq!(all.groups, expected);
    let capped = c.committed_offsets(2);
    assert_eq!(capped.groups_left_out, 1);
    let ids: Vec<&str> = capped.groups.iter().map(|g| g.group_id.as_str()).collect();
    assert_eq!(ids, ["a", "b"], "the first groups by id, every scrape");
    assert!(c.committed_offsets(0).groups.is_empty());
}

fn join_request_for(group: &str) -> JoinRequest {
    JoinRequest {
        group_id: group.into(),
        ..join_request("", None, &["range"])
    }
}

/// A commit of `t-0` at `offset` from outside the group protocol (no member, generation -1).
fn commit_outside_protocol(group: &str, offset: i64) -> CommitRequest {
    CommitRequest {
        group_id: group.into(),
        member_id: String::new(),
        group_instance_id: None,
        generation_id: -1,
        unknown_group_is_not_found: false,
        offsets: vec![OffsetToCommit {
            topic: "t".into(),
            partition: 0,
            offset,
            leader_epoch: -1,
            metadata: None,
        }],
    }
}
