//! Grade passback against the simulated Classroom over loopback: a courseWork created by our
//! project, graded draft, then assigned, then returned, with scores scaled to its
//! `maxPoints`; another project's courseWork refused as `ProjectPermissionDenied`; grades
//! through an add-on attachment on work we did not create.

mod common;

use classroom::grade::ScaleError;
use classroom::model::{
    AddOnRole, GradeUpdate, NewAddOnAttachment, NewCourseWork, SubmissionState, UserRef,
};
use classroom::{AddOnToken, ApiError, CourseId, CourseWorkId, scopes};
use common::{Harness, of_method, query_value};
use testkit::classroom::OAuthClientRegistration;
use url::Url;

#[tokio::test]
async fn a_grade_goes_draft_then_assigned_then_returned_scaled_to_max_points() {
    let h = Harness::start().await;
    let creds = h.teacher(scopes::COURSEWORK).await;
    let course = CourseId::new(h.fake.algebra_course_id());
    let work = h
        .api
        .create_course_work(
            &creds,
            &course,
            &NewCourseWork {
                title: "Quiz 1: linear equations".into(),
                description: Some("Graded by the practice app".into()),
                max_points: 40,
            },
        )
        .await
        .unwrap();
    assert_eq!(work.max_points, Some(40.0));
    assert_eq!(work.associated_with_developer, Some(true));
    let stored = h.fake.course_work(work.id.as_str()).unwrap();
    assert_eq!(stored.project, h.fake.client().project);
    assert_eq!(
        (stored.state.as_str(), stored.work_type.as_str()),
        ("PUBLISHED", "ASSIGNMENT")
    );
    let work = h
        .api
        .get_course_work(&creds, &course, &work.id)
        .await
        .unwrap();

    let alan = &h.fake.students()[0];
    let mine = h
        .api
        .list_submissions(
            &creds,
            &course,
            &work.id,
            Some(&UserRef::Email(alan.email.clone())),
        )
        .await
        .unwrap();
    assert_eq!(mine.len(), 1);
    let sub = &mine[0];
    assert_eq!(sub.user_id.as_str(), alan.id);

    // 8.5 out of 10 is 34 out of 40.
    let points = work.scale(8.5, 10.0).unwrap();
    assert_eq!(points, 34.0);
    let after = h
        .api
        .patch_grades(
            &creds,
            &course,
            &work.id,
            &sub.id,
            GradeUpdate::draft(points),
        )
        .await
        .unwrap();
    assert_eq!(
        (after.draft_grade, after.assigned_grade),
        (Some(34.0), None)
    );
    let seen = h.fake.submissions(work.id.as_str());
    let alan_seen = seen.iter().find(|s| s.user_id == alan.id).unwrap();
    assert_eq!(
        (alan_seen.draft_grade, alan_seen.assigned_grade),
        (Some(34.0), None)
    );
    assert_ne!(alan_seen.state, "RETURNED");

    let after = h
        .api
        .patch_grades(
            &creds,
            &course,
            &work.id,
            &sub.id,
            GradeUpdate::assigned(points),
        )
        .await
        .unwrap();
    assert_eq!(after.assigned_grade, Some(34.0));
    h.api
        .return_submission(&creds, &course, &work.id, &sub.id)
        .await
        .unwrap();
    let alan_seen = h
        .fake
        .submissions(work.id.as_str())
        .into_iter()
        .find(|s| s.user_id == alan.id)
        .unwrap();
    assert_eq!(alan_seen.state, "RETURNED");
    assert_eq!(
        (alan_seen.draft_grade, alan_seen.assigned_grade),
        (Some(34.0), Some(34.0))
    );

    // Another student, graded in one patch: 1 of 3 is 13.33 of 40.
    let all = h
        .api
        .list_submissions(&creds, &course, &work.id, None)
        .await
        .unwrap();
    assert_eq!(all.len(), 7);
    let katherine = all
        .iter()
        .find(|s| s.user_id.as_str() == h.fake.students()[1].id)
        .unwrap();
    let g = work.scale(1.0, 3.0).unwrap();
    let after = h
        .api
        .patch_grades(
            &creds,
            &course,
            &work.id,
            &katherine.id,
            GradeUpdate::both(g),
        )
        .await
        .unwrap();
    assert_eq!(
        (after.draft_grade, after.assigned_grade),
        (Some(13.33), Some(13.33))
    );
    assert_eq!(after.state, Some(SubmissionState::New));

    let recorded = h.recorded();
    let masks: Vec<_> = of_method(
        &recorded,
        "classroom.courses.courseWork.studentSubmissions.patch",
    )
    .into_iter()
    .map(|r| query_value(r, "updateMask").unwrap().to_owned())
    .collect();
    assert_eq!(
        masks,
        ["draftGrade", "assignedGrade", "draftGrade,assignedGrade"]
    );
    h.finish();
}

#[tokio::test]
async fn grades_that_cannot_be_are_refused_before_anything_is_sent() {
    let h = Harness::start().await;
    let creds = h.teacher(scopes::COURSEWORK).await;
    let course = CourseId::new(h.fake.algebra_course_id());
    let ungraded = h
        .api
        .create_course_work(
            &creds,
            &course,
            &NewCourseWork {
                title: "Reflection".into(),
                description: None,
                max_points: 0,
            },
        )
        .await
        .unwrap();
    assert_eq!(ungraded.scale(5.0, 10.0), Err(ScaleError::Ungraded));
    let sent = h.recorded().len();
    let sub = classroom::SubmissionId::new("whatever");
    for update in [
        GradeUpdate::default(),
        GradeUpdate::draft(-1.0),
        GradeUpdate::assigned(f64::NAN),
    ] {
        let err = h
            .api
            .patch_grades(&creds, &course, &ungraded.id, &sub, update)
            .await
            .unwrap_err();
        assert!(matches!(err, ApiError::InvalidRequest(_)), "{err:?}");
    }
    assert_eq!(h.recorded().len(), sent);
    h.finish();
}

#[tokio::test]
async fn another_projects_course_work_is_project_permission_denied() {
    let h = Harness::start().await;
    let creds = h.teacher(scopes::COURSEWORK).await;
    let course = CourseId::new(h.fake.algebra_course_id());

    // Made in the Classroom web app (seeded).
    let foreign = CourseWorkId::new(h.fake.foreign_course_work_id());
    let work = h
        .api
        .get_course_work(&creds, &course, &foreign)
        .await
        .unwrap();
    assert_eq!(work.associated_with_developer, Some(false));
    let subs = h
        .api
        .list_submissions(&creds, &course, &foreign, None)
        .await
        .unwrap();
    let err = h
        .api
        .patch_grades(
            &creds,
            &course,
            &foreign,
            &subs[0].id,
            GradeUpdate::draft(10.0),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, ApiError::ProjectPermissionDenied { .. }),
        "{err:?}"
    );
    assert_eq!(err.code(), "project_permission_denied");
    assert_eq!(err.error_type(), Some("ProjectPermissionDenied"));
    assert!(
        err.to_string()
            .contains("only the Google Cloud project that created this assignment")
    );
    assert!(!err.is_retryable());
    let err = h
        .api
        .return_submission(&creds, &course, &foreign, &subs[0].id)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ApiError::ProjectPermissionDenied { .. }),
        "{err:?}"
    );
    assert!(
        h.fake
            .submissions(foreign.as_str())
            .iter()
            .all(|s| s.draft_grade.is_none() && s.state == "NEW")
    );

    // Made through the API by another integration's project: the same, while that project
    // itself may grade it.
    let other_registration = OAuthClientRegistration::new(
        "other-integration",
        Url::parse("https://other.example/oauth2/callback").unwrap(),
    );
    h.fake.register_client(other_registration.clone());
    let other_oauth = Harness::oauth_client(&h.fake, &other_registration);
    let other_grant = h
        .connect_with(&other_oauth, &h.fake.teacher().email, scopes::COURSEWORK)
        .await;
    let other_creds = classroom::Credentials::Offline(other_grant.refresh_token.unwrap());
    let other_api = classroom::ClassroomClient::new(common::http(), other_oauth);
    let theirs = other_api
        .create_course_work(
            &other_creds,
            &course,
            &NewCourseWork {
                title: "Their quiz".into(),
                description: None,
                max_points: 10,
            },
        )
        .await
        .unwrap();
    let subs = h
        .api
        .list_submissions(&creds, &course, &theirs.id, None)
        .await
        .unwrap();
    let err = h
        .api
        .patch_grades(
            &creds,
            &course,
            &theirs.id,
            &subs[0].id,
            GradeUpdate::draft(7.0),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, ApiError::ProjectPermissionDenied { .. }),
        "{err:?}"
    );
    let ok = other_api
        .patch_grades(
            &other_creds,
            &course,
            &theirs.id,
            &subs[0].id,
            GradeUpdate::draft(7.0),
        )
        .await
        .unwrap();
    assert_eq!(ok.draft_grade, Some(7.0));
    h.finish();
}

#[tokio::test]
async fn an_add_on_attachment_grades_work_another_project_created() {
    let h = Harness::start().await;
    let teacher = h
        .teacher(&[scopes::ADDONS_TEACHER, scopes::COURSEWORK_STUDENTS])
        .await;
    let course = CourseId::new(h.fake.algebra_course_id());
    let item = CourseWorkId::new(h.fake.foreign_course_work_id());

    // Without the token Classroom hands the iframe, the add-on has no business on this post.
    let err = h
        .api
        .get_add_on_context(&teacher, &course, &item, None, None)
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::PermissionDenied { .. }), "{err:?}");

    // The teacher opens the add-on in the Attachment Discovery iframe.
    let token = AddOnToken::new(h.fake.issue_add_on_token(course.as_str(), item.as_str()));
    let context = h
        .api
        .get_add_on_context(&teacher, &course, &item, Some(&token), None)
        .await
        .unwrap();
    assert_eq!(context.role(), Some(AddOnRole::Teacher));
    assert_eq!(context.supports_student_work, Some(true));
    let base = Url::parse("https://lmsbridge.example/classroom/").unwrap();
    let attachment = h
        .api
        .create_add_on_attachment(
            &teacher,
            &course,
            &item,
            Some(&token),
            &NewAddOnAttachment {
                title: "Practice set 3".into(),
                teacher_view_uri: base.join("teacher?item=3").unwrap(),
                student_view_uri: base.join("student?item=3").unwrap(),
                student_work_review_uri: Some(base.join("review?item=3").unwrap()),
                max_points: Some(20),
            },
        )
        .await
        .unwrap();
    assert_eq!(attachment.grade_sync_enabled, Some(true));
    assert_eq!(attachment.max_points, Some(20.0));

    // A student opening it is told their own submission.
    let katherine = h.fake.students()[1].clone();
    let student = h.offline(&katherine.email, &[scopes::ADDONS_STUDENT]).await;
    let context = h
        .api
        .get_add_on_context(&student, &course, &item, None, Some(&attachment.id))
        .await
        .unwrap();
    let Some(AddOnRole::Student {
        submission_id: Some(submission),
    }) = context.role()
    else {
        panic!("{context:?}");
    };
    let theirs = h
        .fake
        .submissions(item.as_str())
        .into_iter()
        .find(|s| s.user_id == katherine.id)
        .unwrap();
    assert_eq!(submission.as_str(), theirs.id);

    // 3 of 4 is 15 of the attachment's 20; grade sync shows it as the draft grade.
    let points = classroom::grade::scale_to_max_points(3.0, 4.0, attachment.max_points).unwrap();
    let graded = h
        .api
        .patch_add_on_points(
            &teacher,
            &course,
            &item,
            &attachment.id,
            &submission,
            points,
        )
        .await
        .unwrap();
    assert_eq!(graded.points_earned, Some(15.0));
    let seen = h
        .fake
        .submissions(item.as_str())
        .into_iter()
        .find(|s| s.user_id == katherine.id)
        .unwrap();
    assert_eq!(seen.draft_grade, Some(15.0));
    assert_eq!(
        h.fake.attachments()[0].points,
        vec![(submission.to_string(), 15.0)]
    );
    // With grade sync on the post, the submission itself may now be graded and returned.
    h.api
        .patch_grades(
            &teacher,
            &course,
            &item,
            &submission,
            GradeUpdate::assigned(15.0),
        )
        .await
        .unwrap();
    h.api
        .return_submission(&teacher, &course, &item, &submission)
        .await
        .unwrap();
    let seen = h
        .fake
        .submissions(item.as_str())
        .into_iter()
        .find(|s| s.user_id == katherine.id)
        .unwrap();
    assert_eq!(
        (seen.assigned_grade, seen.state.as_str()),
        (Some(15.0), "RETURNED")
    );
    h.finish();
}
