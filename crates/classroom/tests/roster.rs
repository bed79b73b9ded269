//! Rosters against the simulated Classroom over loopback: courses filtered and paged,
//! students over four pages of two, teachers with emails only where granted, and roster
//! change notifications.

mod common;

use classroom::model::{CourseState, PubSubTopic, UserRef};
use classroom::{ApiError, CourseId, CourseQuery, scopes};
use common::{Harness, of_method, query_value};
use std::collections::BTreeSet;

#[tokio::test]
async fn courses_are_filtered_and_walked_page_by_page() {
    let h = Harness::start().await;
    let creds = h.teacher(scopes::ROSTER).await;
    let query = CourseQuery {
        teacher_id: Some(UserRef::Me),
        page_size: Some(1),
        ..Default::default()
    };
    let courses = h.api.list_courses(&creds, &query).await.unwrap();
    let names: Vec<_> = courses.iter().map(|c| c.name.clone().unwrap()).collect();
    // Newest first, one per page.
    assert_eq!(names, ["Statistics", "Geometry", "Algebra 1"]);
    assert_eq!(courses[1].course_state, Some(CourseState::Archived));
    let pages = of_method(&h.recorded(), "classroom.courses.list").len();
    assert_eq!(pages, 3);

    // Filters go to Google as repeated parameters and narrow the answer.
    let active = CourseQuery {
        teacher_id: Some(UserRef::Email(h.fake.teacher().email)),
        course_states: vec![CourseState::Active, CourseState::Provisioned],
        ..Default::default()
    };
    let courses = h.api.list_courses(&creds, &active).await.unwrap();
    let ids: BTreeSet<_> = courses.iter().map(|c| c.id.to_string()).collect();
    assert_eq!(
        ids,
        BTreeSet::from(["300000000001".to_owned(), "300000000004".to_owned()])
    );
    let last = h.recorded().pop().unwrap();
    assert_eq!(
        last.query
            .iter()
            .filter(|(k, _)| k == "courseStates")
            .count(),
        2
    );
    // Grace's courses as Ada sees them: only the one they share.
    let shared = CourseQuery {
        teacher_id: Some(UserRef::Id(classroom::UserId::new(h.fake.co_teacher().id))),
        ..Default::default()
    };
    let courses = h.api.list_courses(&creds, &shared).await.unwrap();
    assert_eq!(courses.len(), 1);
    assert_eq!(courses[0].id.as_str(), h.fake.algebra_course_id());
    h.finish();
}

#[tokio::test]
async fn students_are_read_over_four_pages_of_two() {
    let h = Harness::start().await;
    let creds = h.teacher(scopes::ROSTER).await;
    let course = CourseId::new(h.fake.algebra_course_id());
    let students = h.api.list_students(&creds, &course, Some(2)).await.unwrap();
    let expected = h.fake.students();
    assert_eq!(students.len(), expected.len());
    for (got, want) in students.iter().zip(&expected) {
        assert_eq!(got.user_id.as_str(), want.id);
        assert_eq!(got.course_id, course);
        let profile = got.profile.as_ref().unwrap();
        assert_eq!(profile.email_address.as_deref(), Some(want.email.as_str()));
        let name = profile.name.as_ref().unwrap();
        assert_eq!(name.given_name.as_deref(), Some(want.given_name.as_str()));
        assert_eq!(name.family_name.as_deref(), Some(want.family_name.as_str()));
    }
    let recorded = h.recorded();
    let pages = of_method(&recorded, "classroom.courses.students.list");
    assert_eq!(pages.len(), 4);
    assert!(query_value(pages[0], "pageToken").is_none());
    let tokens: BTreeSet<_> = pages[1..]
        .iter()
        .map(|p| query_value(p, "pageToken").unwrap())
        .collect();
    assert_eq!(
        tokens.len(),
        3,
        "each page asked with the token of the one before"
    );
    assert!(
        pages
            .iter()
            .all(|p| query_value(p, "pageSize") == Some("2"))
    );

    // Page by page, as a roster job that writes progress would read it.
    let first = h
        .api
        .students_page(&creds, &course, Some(3), None)
        .await
        .unwrap();
    assert_eq!(first.items.len(), 3);
    let token = first.next_page_token.unwrap();
    let second = h
        .api
        .students_page(&creds, &course, Some(3), Some(&token))
        .await
        .unwrap();
    assert_eq!(second.items[0].user_id, students[3].user_id);
    h.finish();
}

#[tokio::test]
async fn teachers_carry_emails_only_with_the_emails_scope() {
    let h = Harness::start().await;
    let course = CourseId::new(h.fake.algebra_course_id());
    let with = h.teacher(scopes::ROSTER).await;
    let teachers = h.api.list_teachers(&with, &course, None).await.unwrap();
    let emails: Vec<_> = teachers
        .iter()
        .map(|t| t.profile.as_ref().unwrap().email_address.clone().unwrap())
        .collect();
    assert_eq!(emails, [h.fake.teacher().email, h.fake.co_teacher().email]);

    // Grace has not consented before; for Ada, incremental authorization would bring the
    // emails scope granted earlier back into any new grant.
    let without = h
        .offline(
            &h.fake.co_teacher().email,
            &[scopes::COURSES_READONLY, scopes::ROSTERS_READONLY],
        )
        .await;
    let teachers = h.api.list_teachers(&without, &course, None).await.unwrap();
    assert_eq!(teachers.len(), 2);
    assert!(
        teachers
            .iter()
            .all(|t| t.profile.as_ref().unwrap().email_address.is_none())
    );
    h.finish();
}

#[tokio::test]
async fn a_roster_without_the_roster_scope_is_insufficient_scopes() {
    let h = Harness::start().await;
    let creds = h.teacher(scopes::COURSEWORK).await;
    let course = CourseId::new(h.fake.algebra_course_id());
    let err = h
        .api
        .list_students(&creds, &course, None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ApiError::InsufficientScopes { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("connect again"));
    // A course the teacher is not in: permission denied, not a crash.
    let roster = h.teacher(scopes::ROSTER).await;
    let err = h
        .api
        .list_students(&roster, &CourseId::new("300000000003"), None)
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::PermissionDenied { .. }), "{err:?}");
    h.finish();
}

#[tokio::test]
async fn roster_changes_are_registered_for_push_notifications() {
    let h = Harness::start().await;
    let creds = h.teacher(scopes::PUSH).await;
    let course = CourseId::new(h.fake.algebra_course_id());
    let topic = PubSubTopic::new("projects/lmsbridge-test/topics/classroom-rosters").unwrap();
    let reg = h
        .api
        .register_roster_changes(&creds, &course, &topic)
        .await
        .unwrap();
    let expiry = reg.expiry_time.unwrap();
    let week = time::OffsetDateTime::now_utc() + time::Duration::days(7);
    assert!(
        (expiry - week).abs() < time::Duration::minutes(1),
        "{expiry}"
    );
    let stored = h.fake.registrations();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].id, reg.registration_id.as_str());
    assert_eq!(stored[0].feed_type, "COURSE_ROSTER_CHANGES");
    assert_eq!(stored[0].course_id, course.as_str());
    assert_eq!(stored[0].topic, topic.as_str());
    assert!(PubSubTopic::new("topics/x").is_none());
    h.finish();
}
