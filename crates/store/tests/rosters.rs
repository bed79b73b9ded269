//! Roster sync storage on SQLite and, when configured, PostgreSQL: generations and removal,
//! differences, the person id shared with launches, one sync per context, leases, resuming,
//! listing, and tenant isolation.

use domain::*;
use store::crypto::sha256_hex;
use store::testing::TestDatabase;
use store::*;
use url::Url;

fn admin() -> Actor {
    Actor::system("test")
}

const MEMBERSHIPS: &str = "https://lms.example/api/lti/courses/1/names_and_roles";

struct Fixture {
    scope: TenantScope,
    platform: Platform,
    context: ContextId,
    /// The person of the launch that created the context (`user-1`, a learner).
    launcher: PersonId,
}

fn launch(platform: PlatformId, user: &str, roles: Vec<Role>) -> NewLaunch {
    let nonce = format!("nonce-{user}-{}", uuid::Uuid::new_v4());
    NewLaunch {
        platform_id: platform,
        deployment_id: "dep-1".into(),
        nonce: nonce.clone(),
        nonce_expires_at: now_micros() + 3_600_000_000,
        message_type: "LtiResourceLinkRequest".into(),
        person: Some(LaunchPerson {
            platform_user_id: user.into(),
            name: Some(format!("Launched {user}")),
            ..Default::default()
        }),
        roles,
        context: Some(LaunchContext {
            platform_context_id: "course-1".into(),
            title: Some("Biology".into()),
            memberships_url: Some(MEMBERSHIPS.into()),
            ..Default::default()
        }),
        resource: Some(("res-1".into(), None)),
        line_item: None,
        extras: serde_json::json!({}),
        handoff_code_hash: sha256_hex(nonce.as_bytes()),
        handoff_expires_at: now_micros() + 60_000_000,
    }
}

async fn fixture(store: &Store, name: &str) -> Fixture {
    let (tenant, _) = store.create_tenant(name, None, &admin()).await.unwrap();
    let scope = store.tenant_scope(tenant.id).await.unwrap();
    let platform = store
        .tenant(&scope)
        .add_platform(
            &NewPlatform {
                kind: PlatformKind::Canvas,
                issuer: format!("https://{name}.lms.example"),
                client_id: format!("client-{name}"),
                auth_url: Url::parse("https://lms.example/auth").unwrap(),
                token_url: Url::parse("https://lms.example/token").unwrap(),
                jwks_url: Url::parse("https://lms.example/jwks").unwrap(),
                token_audience: None,
                accept_new_deployments: false,
                deployment_ids: vec!["dep-1".into()],
            },
            &admin(),
        )
        .await
        .unwrap();
    let recorded = store
        .tenant(&scope)
        .record_launch(&launch(platform.id, "user-1", vec![Role::Learner]))
        .await
        .unwrap();
    Fixture {
        scope,
        platform,
        context: recorded.context_id.unwrap(),
        launcher: recorded.person_id.unwrap(),
    }
}

fn member(id: &str, roles: Vec<Role>, status: EnrollmentStatus) -> RosterMemberInput {
    RosterMemberInput {
        platform_user_id: id.into(),
        name: Some(format!("Name {id}")),
        given_name: Some("Given".into()),
        family_name: Some(format!("Family {id}")),
        email: Some(format!("{id}@school.example")),
        picture: Some(Url::parse(&format!("https://lms.example/pictures/{id}.png")).unwrap()),
        lis_person_sourcedid: Some(format!("sis-{id}")),
        roles,
        status,
    }
}

fn active(id: &str) -> RosterMemberInput {
    member(id, vec![Role::Learner], EnrollmentStatus::Active)
}

fn page_url(n: u32) -> Url {
    Url::parse(&format!("{MEMBERSHIPS}?page={n}")).unwrap()
}

fn all_statuses() -> MemberQuery {
    MemberQuery {
        status: None,
        role: None,
        after: None,
        limit: 100,
    }
}

/// (user id, status) of every member, in user id order.
async fn roster(store: &Store, f: &Fixture) -> Vec<(String, EnrollmentStatus)> {
    let page = store
        .tenant(&f.scope)
        .list_members(f.context, &all_statuses())
        .await
        .unwrap();
    let mut out: Vec<_> = page
        .members
        .into_iter()
        .map(|m| (m.platform_user_id, m.status))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Runs a whole sync: queue, claim, one `record` per page, finish as done.
async fn sync(
    store: &Store,
    f: &Fixture,
    kind: SyncKind,
    first: &Url,
    pages: Vec<Vec<RosterMemberInput>>,
    differences: Option<Url>,
) -> RosterSync {
    let t = store.tenant(&f.scope);
    let queued = t
        .queue_roster_sync(f.context, kind, first, &admin())
        .await
        .unwrap();
    assert!(queued.created);
    let claim = t
        .claim_roster_sync(queued.sync.id, "runner-a", now_micros() + 60_000_000)
        .await
        .unwrap()
        .expect("a queued sync can be claimed");
    assert_eq!(claim.sync.state, SyncState::Running);
    assert_eq!(claim.sync.next_url.as_ref(), Some(first));
    let count = pages.len();
    for (i, members) in pages.into_iter().enumerate() {
        let last = i + 1 == count;
        let progress = t
            .record_roster_page(
                &claim,
                &RosterPageInput {
                    members,
                    next_url: (!last).then(|| page_url(u32::try_from(i).unwrap() + 2)),
                    differences_url: if last { differences.clone() } else { None },
                },
                now_micros() + 60_000_000,
            )
            .await
            .unwrap()
            .expect("the lease is held");
        assert_eq!(progress.pages_fetched, i64::try_from(i).unwrap() + 1);
        assert_eq!(progress.state, SyncState::Running);
    }
    t.finish_roster_sync(&claim, &SyncOutcome::Done)
        .await
        .unwrap()
        .expect("the lease is held")
}

async fn for_each_db<F, Fut>(test: F)
where
    F: Fn(Store) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for db in TestDatabase::all().await.unwrap() {
        eprintln!("running on {}", db.label);
        test(db.store.clone()).await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn a_full_sync_marks_removed_whoever_it_no_longer_sees() {
    for_each_db(|store| async move {
        let f = fixture(&store, "gen").await;
        let t = store.tenant(&f.scope);
        let source = t.roster_source(f.context).await.unwrap();
        assert_eq!(
            source.memberships_url,
            Some(Url::parse(MEMBERSHIPS).unwrap())
        );
        assert_eq!(source.differences_url, None);
        assert_eq!(source.active, None);

        // Two pages: the launcher (now also a mentor), two learners, one inactive member.
        let first = sync(
            &store,
            &f,
            SyncKind::Full,
            &page_url(1),
            vec![
                vec![
                    member(
                        "user-1",
                        vec![Role::Learner, Role::Mentor],
                        EnrollmentStatus::Active,
                    ),
                    active("u2"),
                ],
                vec![
                    active("u3"),
                    member("u4", vec![Role::Learner], EnrollmentStatus::Inactive),
                ],
            ],
            None,
        )
        .await;
        assert_eq!(first.state, SyncState::Done);
        assert_eq!(first.generation, 1);
        assert_eq!(
            (
                first.pages_fetched,
                first.members_seen,
                first.added,
                first.updated,
                first.removed
            ),
            (2, 4, 3, 1, 0)
        );
        assert_eq!(first.next_url, None);
        assert!(first.finished_at.is_some() && first.started_at.is_some());
        assert_eq!(
            roster(&store, &f).await,
            [
                ("u2".to_owned(), EnrollmentStatus::Active),
                ("u3".to_owned(), EnrollmentStatus::Active),
                ("u4".to_owned(), EnrollmentStatus::Inactive),
                ("user-1".to_owned(), EnrollmentStatus::Active),
            ]
        );
        let listed = t.list_members(f.context, &all_statuses()).await.unwrap();
        let u2 = listed
            .members
            .iter()
            .find(|m| m.platform_user_id == "u2")
            .unwrap();
        assert_eq!(u2.email.as_deref(), Some("u2@school.example"));
        assert_eq!(
            u2.picture.as_deref(),
            Some("https://lms.example/pictures/u2.png")
        );
        assert_eq!(u2.lis_person_sourcedid.as_deref(), Some("sis-u2"));
        assert_eq!(u2.source, "nrps");
        let launcher = listed
            .members
            .iter()
            .find(|m| m.platform_user_id == "user-1")
            .unwrap();
        assert_eq!(launcher.person_id, f.launcher);
        assert_eq!(launcher.roles, [Role::Learner, Role::Mentor]);
        assert_eq!(launcher.source, "launch", "where it was first learnt of");

        // The same roster again changes nothing.
        let again = sync(
            &store,
            &f,
            SyncKind::Full,
            &page_url(1),
            vec![vec![
                member(
                    "user-1",
                    vec![Role::Mentor, Role::Learner],
                    EnrollmentStatus::Active,
                ),
                active("u2"),
                active("u3"),
                member("u4", vec![Role::Learner], EnrollmentStatus::Inactive),
            ]],
            None,
        )
        .await;
        assert_eq!(again.generation, 2);
        assert_eq!((again.added, again.updated, again.removed), (0, 0, 0));

        // u3 and u4 left the course; a later full sync does not see them.
        let third = sync(
            &store,
            &f,
            SyncKind::Full,
            &page_url(1),
            vec![vec![
                member(
                    "user-1",
                    vec![Role::Learner, Role::Mentor],
                    EnrollmentStatus::Active,
                ),
                active("u2"),
            ]],
            None,
        )
        .await;
        assert_eq!((third.added, third.updated, third.removed), (0, 0, 2));
        assert_eq!(
            roster(&store, &f).await,
            [
                ("u2".to_owned(), EnrollmentStatus::Active),
                ("u3".to_owned(), EnrollmentStatus::Deleted),
                ("u4".to_owned(), EnrollmentStatus::Deleted),
                ("user-1".to_owned(), EnrollmentStatus::Active),
            ]
        );
        // The removals are audited by name.
        let entries = t.audit_entries().await.unwrap();
        let done = entries
            .iter()
            .rev()
            .find(|e| e.action == "roster_sync.done")
            .unwrap();
        let detail: serde_json::Value = serde_json::from_str(&done.detail).unwrap();
        assert_eq!(detail["removed_as_unseen"], serde_json::json!(["u3", "u4"]));
        assert!(
            store
                .verify_audit(None)
                .await
                .unwrap()
                .iter()
                .all(|r| r.is_intact())
        );

        // Someone who launches while a full sync runs is not removed by it, even though the
        // platform's pages (read before they joined) did not list them.
        let queued = t
            .queue_roster_sync(f.context, SyncKind::Full, &page_url(1), &admin())
            .await
            .unwrap();
        let claim = t
            .claim_roster_sync(queued.sync.id, "runner-a", now_micros() + 60_000_000)
            .await
            .unwrap()
            .unwrap();
        t.record_roster_page(
            &claim,
            &RosterPageInput {
                members: vec![active("user-1"), active("u2")],
                ..Default::default()
            },
            now_micros() + 60_000_000,
        )
        .await
        .unwrap()
        .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        t.record_launch(&launch(f.platform.id, "late", vec![Role::Learner]))
            .await
            .unwrap();
        let fourth = t
            .finish_roster_sync(&claim, &SyncOutcome::Done)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(fourth.removed, 0);
        let now = roster(&store, &f).await;
        assert!(
            now.contains(&("late".to_owned(), EnrollmentStatus::Active)),
            "{now:?}"
        );
        // A removed member who launches again is active again.
        t.record_launch(&launch(f.platform.id, "u3", vec![Role::Learner]))
            .await
            .unwrap();
        assert!(
            roster(&store, &f)
                .await
                .contains(&("u3".to_owned(), EnrollmentStatus::Active))
        );
    })
    .await;
}

#[tokio::test]
async fn a_differences_sync_applies_only_the_changes() {
    for_each_db(|store| async move {
        let f = fixture(&store, "diff").await;
        let t = store.tenant(&f.scope);
        let link = Url::parse(&format!("{MEMBERSHIPS}?since=41")).unwrap();
        let full = sync(
            &store,
            &f,
            SyncKind::Full,
            &page_url(1),
            vec![vec![active("user-1"), active("u2"), active("u3")]],
            Some(link.clone()),
        )
        .await;
        assert_eq!(full.differences_url.as_ref(), Some(&link));
        assert_eq!(
            t.roster_source(f.context).await.unwrap().differences_url,
            Some(link.clone()),
            "kept for next time"
        );

        let diff = sync(
            &store,
            &f,
            SyncKind::Differences,
            &link,
            vec![vec![
                member("u2", vec![], EnrollmentStatus::Deleted),
                active("u5"),
                // Someone we never knew, deleted: nothing to remove, nothing created.
                member("ghost", vec![], EnrollmentStatus::Deleted),
            ]],
            Some(Url::parse(&format!("{MEMBERSHIPS}?since=42")).unwrap()),
        )
        .await;
        assert_eq!(diff.kind, SyncKind::Differences);
        assert_eq!(diff.generation, full.generation, "no new generation");
        assert_eq!((diff.added, diff.updated, diff.removed), (1, 0, 1));
        assert_eq!(
            roster(&store, &f).await,
            [
                ("u2".to_owned(), EnrollmentStatus::Deleted),
                ("u3".to_owned(), EnrollmentStatus::Active),
                ("u5".to_owned(), EnrollmentStatus::Active),
                ("user-1".to_owned(), EnrollmentStatus::Active),
            ],
            "members the differences page did not mention are kept"
        );
        assert_eq!(
            t.roster_source(f.context).await.unwrap().differences_url,
            Some(Url::parse(&format!("{MEMBERSHIPS}?since=42")).unwrap()),
            "the newest link replaces the old one"
        );
    })
    .await;
}

#[tokio::test]
async fn a_member_read_before_their_first_launch_is_the_person_the_launch_finds() {
    for_each_db(|store| async move {
        let f = fixture(&store, "ids").await;
        let t = store.tenant(&f.scope);
        sync(
            &store,
            &f,
            SyncKind::Full,
            &page_url(1),
            vec![vec![active("user-1"), active("newcomer")]],
            None,
        )
        .await;
        let listed = t.list_members(f.context, &all_statuses()).await.unwrap();
        let synced = listed
            .members
            .iter()
            .find(|m| m.platform_user_id == "newcomer")
            .unwrap()
            .person_id;
        let recorded = t
            .record_launch(&launch(f.platform.id, "newcomer", vec![Role::Learner]))
            .await
            .unwrap();
        assert_eq!(recorded.person_id, Some(synced));
        // One person, one enrolment; the launch's name fills in, NRPS details stay.
        let listed = t.list_members(f.context, &all_statuses()).await.unwrap();
        let rows: Vec<_> = listed
            .members
            .iter()
            .filter(|m| m.platform_user_id == "newcomer")
            .collect();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].name.as_deref(), Some("Launched newcomer"));
        assert_eq!(rows[0].email.as_deref(), Some("newcomer@school.example"));
    })
    .await;
}

#[tokio::test]
async fn one_sync_per_context_and_only_the_lease_holder_writes() {
    for_each_db(|store| async move {
        let f = fixture(&store, "lease").await;
        let t = store.tenant(&f.scope);
        let first = t
            .queue_roster_sync(f.context, SyncKind::Full, &page_url(1), &admin())
            .await
            .unwrap();
        let second = t
            .queue_roster_sync(f.context, SyncKind::Full, &page_url(1), &admin())
            .await
            .unwrap();
        assert!(first.created);
        assert!(!second.created);
        assert_eq!(second.sync.id, first.sync.id);
        assert_eq!(
            t.roster_source(f.context)
                .await
                .unwrap()
                .active
                .map(|s| s.id),
            Some(first.sync.id)
        );
        // Queued syncs are picked up after a restart.
        let due = store.roster_syncs_to_resume(10).await.unwrap();
        assert!(due.contains(&(f.scope.clone(), first.sync.id)));

        // Runner A holds the lease; B can neither claim nor write.
        let a = t
            .claim_roster_sync(first.sync.id, "runner-a", now_micros() + 60_000_000)
            .await
            .unwrap()
            .unwrap();
        assert!(
            t.claim_roster_sync(first.sync.id, "runner-b", now_micros() + 60_000_000)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            !store
                .roster_syncs_to_resume(10)
                .await
                .unwrap()
                .iter()
                .any(|(_, id)| *id == first.sync.id)
        );
        let mut b = a.clone();
        b.owner = "runner-b".into();
        let page = RosterPageInput {
            members: vec![active("u2")],
            next_url: Some(page_url(2)),
            differences_url: None,
        };
        assert!(
            t.record_roster_page(&b, &page, now_micros() + 60_000_000)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            t.finish_roster_sync(&b, &SyncOutcome::Done)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            !roster(&store, &f).await.iter().any(|(u, _)| u == "u2"),
            "nothing was written without the lease"
        );

        // A reads page 1 with a lease that then runs out (A stopped): B resumes at page 2.
        let after_one = t
            .record_roster_page(&a, &page, now_micros() - 1)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(after_one.next_url, Some(page_url(2)));
        assert!(
            store
                .roster_syncs_to_resume(10)
                .await
                .unwrap()
                .contains(&(f.scope.clone(), first.sync.id))
        );
        let resumed = t
            .claim_roster_sync(first.sync.id, "runner-b", now_micros() + 60_000_000)
            .await
            .unwrap()
            .expect("an expired lease is taken over");
        assert_eq!(resumed.sync.next_url, Some(page_url(2)));
        assert_eq!(resumed.sync.pages_fetched, 1);
        assert_eq!(resumed.sync.started_at, after_one.started_at);
        assert!(
            t.record_roster_page(&a, &page, now_micros() + 60_000_000)
                .await
                .unwrap()
                .is_none(),
            "the old holder lost the lease"
        );
        let failed = t
            .finish_roster_sync(
                &resumed,
                &SyncOutcome::Failed {
                    code: "platform_5xx".into(),
                    message: "the platform failed (HTTP 502)".into(),
                },
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(failed.state, SyncState::Failed);
        assert_eq!(failed.error_code.as_deref(), Some("platform_5xx"));
        assert_eq!(failed.removed, 0, "a failed full sync removes no one");
        assert!(
            roster(&store, &f)
                .await
                .contains(&("user-1".to_owned(), EnrollmentStatus::Active))
        );
        assert_eq!(
            t.roster_sync(first.sync.id).await.unwrap().unwrap().state,
            SyncState::Failed
        );
        // Finished: a new sync may start, with a new generation.
        let next = t
            .queue_roster_sync(f.context, SyncKind::Full, &page_url(1), &admin())
            .await
            .unwrap();
        assert!(next.created);
        assert_eq!(next.sync.generation, first.sync.generation + 1);
        assert!(
            store
                .verify_audit(None)
                .await
                .unwrap()
                .iter()
                .all(|r| r.is_intact())
        );
    })
    .await;
}

#[tokio::test]
async fn members_are_listed_by_status_and_role_a_page_at_a_time() {
    for_each_db(|store| async move {
        let f = fixture(&store, "list").await;
        let t = store.tenant(&f.scope);
        sync(
            &store,
            &f,
            SyncKind::Full,
            &page_url(1),
            vec![vec![
                active("user-1"),
                active("a"),
                active("b"),
                member("t", vec![Role::Instructor], EnrollmentStatus::Active),
                member(
                    "odd",
                    vec![Role::Other("http://vendor.example/role#Grader_%".into())],
                    EnrollmentStatus::Active,
                ),
                member("gone-soon", vec![Role::Learner], EnrollmentStatus::Inactive),
            ]],
            None,
        )
        .await;
        let mut seen = Vec::new();
        let mut after = None;
        for _ in 0..10 {
            let page = t
                .list_members(
                    f.context,
                    &MemberQuery {
                        status: Some(EnrollmentStatus::Active),
                        role: None,
                        after,
                        limit: 2,
                    },
                )
                .await
                .unwrap();
            assert!(page.members.len() <= 2);
            seen.extend(page.members.iter().map(|m| m.platform_user_id.clone()));
            after = page.next_after;
            if after.is_none() {
                break;
            }
        }
        seen.sort();
        assert_eq!(seen, ["a", "b", "odd", "t", "user-1"]);

        let by_role = |role: Role| {
            let t = store.tenant(&f.scope);
            async move {
                let mut ids: Vec<String> = t
                    .list_members(
                        f.context,
                        &MemberQuery {
                            status: None,
                            role: Some(role),
                            after: None,
                            limit: 100,
                        },
                    )
                    .await
                    .unwrap()
                    .members
                    .into_iter()
                    .map(|m| m.platform_user_id)
                    .collect();
                ids.sort();
                ids
            }
        };
        assert_eq!(by_role(Role::Instructor).await, ["t"]);
        assert_eq!(
            by_role(Role::Learner).await,
            ["a", "b", "gone-soon", "user-1"]
        );
        assert_eq!(
            by_role(Role::Other("http://vendor.example/role#Grader_%".into())).await,
            ["odd"]
        );
        // LIKE wildcards in a role are literal.
        assert!(
            by_role(Role::Other("http://vendor.example/role#Grader__".into()))
                .await
                .is_empty()
        );
    })
    .await;
}

#[tokio::test]
async fn another_tenant_reaches_no_roster_function() {
    for_each_db(|store| async move {
        let a = fixture(&store, "tenant-a").await;
        let b = fixture(&store, "tenant-b").await;
        let ta = store.tenant(&a.scope);
        let tb = store.tenant(&b.scope);
        let queued = ta
            .queue_roster_sync(a.context, SyncKind::Full, &page_url(1), &admin())
            .await
            .unwrap();

        assert!(matches!(
            tb.roster_source(a.context).await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            tb.queue_roster_sync(a.context, SyncKind::Full, &page_url(1), &admin())
                .await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            tb.list_members(a.context, &all_statuses()).await,
            Err(StoreError::NotFound)
        ));
        assert_eq!(tb.roster_sync(queued.sync.id).await.unwrap(), None);
        assert!(
            tb.claim_roster_sync(queued.sync.id, "runner-b", now_micros() + 60_000_000)
                .await
                .unwrap()
                .is_none()
        );

        // A's claim used through B's store writes nothing, and finishes nothing.
        let claim = ta
            .claim_roster_sync(queued.sync.id, "runner-a", now_micros() + 60_000_000)
            .await
            .unwrap()
            .unwrap();
        let page = RosterPageInput {
            members: vec![active("intruder")],
            ..Default::default()
        };
        assert!(
            tb.record_roster_page(&claim, &page, now_micros() + 60_000_000)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            tb.finish_roster_sync(&claim, &SyncOutcome::Done)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            !roster(&store, &a)
                .await
                .iter()
                .any(|(u, _)| u == "intruder")
        );
        assert!(
            !roster(&store, &b)
                .await
                .iter()
                .any(|(u, _)| u == "intruder")
        );

        // A's full sync that does not list user-1 removes A's user-1 only.
        ta.record_roster_page(
            &claim,
            &RosterPageInput {
                members: vec![active("u2")],
                ..Default::default()
            },
            now_micros() + 60_000_000,
        )
        .await
        .unwrap()
        .unwrap();
        let done = ta
            .finish_roster_sync(&claim, &SyncOutcome::Done)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(done.removed, 1);
        assert!(
            roster(&store, &a)
                .await
                .contains(&("user-1".to_owned(), EnrollmentStatus::Deleted))
        );
        assert_eq!(
            roster(&store, &b).await,
            [("user-1".to_owned(), EnrollmentStatus::Active)]
        );
        // B's audit chain holds none of A's roster entries.
        assert!(
            !tb.audit_entries()
                .await
                .unwrap()
                .iter()
                .any(|e| e.action.starts_with("roster_sync"))
        );
    })
    .await;
}
