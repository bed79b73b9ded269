//! Where add-on passback finds what it sends with: the attachment lmsbridge created (and
//! so the teacher whose offline grant grades it) and the student's submission id, which
//! Classroom gave when the student opened the attachment.

use crate::google::Google;
use adapters::{AddOnGrant, AddOnGrants, AddOnTarget, ClassroomGrants};
use async_trait::async_trait;
use classroom::SubmissionId;
use domain::{DeliveryError, PlatformEndpoints};
use store::google::{GOOGLE_ISSUER, GrantStatus};

fn internal(e: store::StoreError) -> DeliveryError {
    tracing::error!(error = %e, "reading Google add-on data failed");
    DeliveryError::Transient {
        status: None,
        retry_after: None,
        detail: "lmsbridge could not read its Google Classroom add-on data".into(),
    }
}

#[async_trait]
impl AddOnGrants for Google {
    async fn add_on_grant(
        &self,
        platform: &PlatformEndpoints,
        target: &AddOnTarget<'_>,
    ) -> Result<AddOnGrant, DeliveryError> {
        let found = self
            .store()
            .find_platforms(GOOGLE_ISSUER, Some(&platform.client_id))
            .await
            .map_err(internal)?;
        let [reg] = found.as_slice() else {
            return Err(DeliveryError::Misconfigured {
                detail: "no Google Classroom platform is configured with this OAuth client id"
                    .into(),
            });
        };
        let tenant = self.store().tenant(&reg.scope);
        let attachment = tenant
            .add_on_attachment(reg.platform.id, target.attachment_id)
            .await
            .map_err(internal)?
            .filter(|a| a.course_id == target.course_id && a.item_id == target.item_id)
            .ok_or_else(|| DeliveryError::Misconfigured {
                detail: "this add-on attachment was not created through lmsbridge".into(),
            })?;
        let max_points = attachment
            .max_points
            .map(f64::from)
            .ok_or_else(|| DeliveryError::Rejected {
                status: 400,
                detail: "this attachment was created without maxPoints, so Classroom takes no grades for it".into(),
            })?;
        let submission = tenant
            .add_on_submission(reg.platform.id, target.attachment_id, target.platform_user_id)
            .await
            .map_err(internal)?
            .ok_or_else(|| DeliveryError::Rejected {
                status: 404,
                detail: "Classroom has not given lmsbridge this student's submission: the student must open the attachment once before it can be graded".into(),
            })?;
        let grant = tenant
            .google_grant_for_user(reg.platform.id, &attachment.teacher_user_id)
            .await
            .map_err(internal)?
            .ok_or_else(|| DeliveryError::Misconfigured {
                detail: "the teacher who created this attachment has no Google grant; they must open the add-on and sign in again".into(),
            })?;
        if grant.status == GrantStatus::Revoked {
            return Err(DeliveryError::Misconfigured {
                detail: format!(
                    "the Google Classroom access of {} was revoked ({}); they must open the add-on and sign in again",
                    grant.email.as_deref().unwrap_or("the teacher"),
                    grant.status_reason.as_deref().unwrap_or("no reason given")
                ),
            });
        }
        let (client, credentials) = match self.grant_client(&reg.scope, grant.id).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                return Err(DeliveryError::Misconfigured {
                    detail: "the teacher's Google grant holds no refresh token; they must open the add-on and sign in again".into(),
                });
            }
            Err(crate::google::GoogleSetupError::NotConfigured) => {
                return Err(DeliveryError::Misconfigured {
                    detail: crate::google::GoogleSetupError::NotConfigured.to_string(),
                });
            }
            Err(crate::google::GoogleSetupError::Store(e)) => return Err(internal(e)),
        };
        Ok(AddOnGrant {
            grant_id: grant.id.to_string(),
            client,
            credentials,
            submission_id: SubmissionId::new(submission),
            max_points,
        })
    }

    async fn add_on_grant_revoked(
        &self,
        platform: &PlatformEndpoints,
        grant_id: &str,
        reason: &str,
    ) {
        ClassroomGrants::grant_revoked(self, platform, grant_id, reason).await;
    }
}
