//! Grades for Google Classroom add-on attachments: `pointsEarned` on the student's
//! attachment submission (`courses.courseWork.addOnAttachments.studentSubmissions.patch`
//! with `updateMask=pointsEarned`). With grade sync on, Classroom shows the points as the
//! submission's draft grade; this is also the only way to grade an assignment a teacher made
//! in Classroom itself, since the attachment, not the post, belongs to our Cloud project.
//!
//! Calls are made with the offline credentials of the teacher who created the attachment,
//! so passback works after they closed the page. Which grant that is, and the student's
//! submission id (from their `getAddOnContext`), come from an [`AddOnGrants`] the server
//! implements over the store. Errors map exactly as for courseWork ([`crate::classroom_delivery_error`]).

use async_trait::async_trait;
use classroom::{AttachmentId, ClassroomClient, CourseId, CourseWorkId, Credentials, SubmissionId};
use domain::{DeliveryError, DeliveryReceipt, PlatformEndpoints, ScoreDelivery, TargetLocation};

/// The attachment and student a score is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddOnTarget<'a> {
    pub course_id: &'a str,
    pub item_id: &'a str,
    pub attachment_id: &'a str,
    /// The student's Google id.
    pub platform_user_id: &'a str,
}

/// What a send needs: the creating teacher's client and credentials, the student's
/// submission, and the attachment's `maxPoints`.
#[derive(Debug, Clone)]
pub struct AddOnGrant {
    /// Named back in [`AddOnGrants::add_on_grant_revoked`].
    pub grant_id: String,
    pub client: ClassroomClient,
    pub credentials: Credentials,
    pub submission_id: SubmissionId,
    pub max_points: f64,
}

/// Where add-on passback finds its grant and submission. The server implements it.
#[async_trait]
pub trait AddOnGrants: Send + Sync + std::fmt::Debug {
    /// The grant and submission for one score; an attachment lmsbridge did not create, or
    /// a student who never opened it, is refused with the reason.
    async fn add_on_grant(
        &self,
        platform: &PlatformEndpoints,
        target: &AddOnTarget<'_>,
    ) -> Result<AddOnGrant, DeliveryError>;

    /// Google refused the grant's refresh token (`invalid_grant`).
    async fn add_on_grant_revoked(
        &self,
        platform: &PlatformEndpoints,
        grant_id: &str,
        reason: &str,
    );
}

/// Sends one add-on score. Safe to repeat: patching the same points twice changes nothing.
/// Requests are paced to Google's per-user quota with the adapter's pacer, which its
/// courseWork and roster calls share.
pub(crate) async fn send(
    grants: &dyn AddOnGrants,
    pacer: &crate::classroom_adapter::UserPacer,
    score: &ScoreDelivery,
) -> Result<DeliveryReceipt, DeliveryError> {
    let TargetLocation::ClassroomAddOnAttachment {
        course_id,
        item_id,
        attachment_id,
    } = &score.target
    else {
        return Err(DeliveryError::Misconfigured {
            detail: "this grade target is not a Classroom add-on attachment".into(),
        });
    };
    let Some(given) = score.score_given else {
        return Ok(DeliveryReceipt::new(
            200,
            "nothing sent: a Classroom add-on attachment keeps points only, and this score carries none",
        ));
    };
    let target = AddOnTarget {
        course_id,
        item_id,
        attachment_id,
        platform_user_id: &score.platform_user_id,
    };
    let grant = grants.add_on_grant(&score.platform, &target).await?;
    pacer.pace(&grant.grant_id).await;
    let maximum = score.score_maximum.unwrap_or(grant.max_points);
    let points = classroom::grade::scale_to_max_points(given, maximum, Some(grant.max_points))
        .map_err(|e| DeliveryError::Rejected {
            status: 400,
            detail: format!("the score cannot become Classroom points: {e}"),
        })?;
    let result = grant
        .client
        .patch_add_on_points(
            &grant.credentials,
            &CourseId::new(course_id.as_str()),
            &CourseWorkId::new(item_id.as_str()),
            &AttachmentId::new(attachment_id.as_str()),
            &grant.submission_id,
            points,
        )
        .await;
    match result {
        Ok(_) => Ok(DeliveryReceipt::new(
            200,
            format!(
                "pointsEarned {points} of {} set on attachment {attachment_id}, submission {}",
                grant.max_points, grant.submission_id
            ),
        )),
        Err(e) => {
            if let classroom::ApiError::Revoked(_) = &e {
                grants
                    .add_on_grant_revoked(&score.platform, &grant.grant_id, &e.to_string())
                    .await;
            }
            Err(crate::classroom_delivery_error(e))
        }
    }
}
