//! The Kubernetes `metav1.Status` JSON written on the error stream.

use crate::BackendError;

/// The status a finished exec or attach reports (`v4` protocols and later):
/// `Success` for exit code 0, `NonZeroExitCode` with the code as the
/// `ExitCode` cause otherwise.
pub fn exit_status_json(code: i32) -> String {
    let v = if code == 0 {
        serde_json::json!({"metadata": {}, "status": "Success"})
    } else {
        serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: exit status {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        })
    };
    v.to_string()
}

/// The status of an exec that could not run at all.
pub(crate) fn error_status_json(err: &BackendError) -> String {
    serde_json::json!({
        "metadata": {},
        "status": "Failure",
        "message": err.message,
        "reason": "InternalError",
        "details": {"causes": [{"message": err.message}]},
        "code": 500,
    })
    .to_string()
}

/// What goes on the error stream when the work ended: for `v4` and later a
/// Status JSON, for older protocols the bare error text (nothing on success).
pub(crate) fn error_stream_payload(
    status_json: bool,
    result: &Result<Option<i32>, BackendError>,
) -> Option<String> {
    match (status_json, result) {
        (true, Ok(Some(code))) => Some(exit_status_json(*code)),
        (true, Ok(None)) => Some(exit_status_json(0)),
        (true, Err(e)) => Some(error_status_json(e)),
        (false, Ok(Some(0) | None)) => None,
        (false, Ok(Some(code))) => Some(format!(
            "command terminated with non-zero exit code: exit status {code}"
        )),
        (false, Err(e)) => Some(e.message.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_become_kubernetes_statuses() {
        let ok: serde_json::Value = serde_json::from_str(&exit_status_json(0)).unwrap();
        assert_eq!(ok["status"], "Success");
        let bad: serde_json::Value = serde_json::from_str(&exit_status_json(3)).unwrap();
        assert_eq!(bad["status"], "Failure");
        assert_eq!(bad["reason"], "NonZeroExitCode");
        assert_eq!(bad["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(bad["details"]["causes"][0]["message"], "3");
    }

    #[test]
    fn old_protocols_get_plain_text_and_nothing_on_success() {
        assert_eq!(error_stream_payload(false, &Ok(Some(0))), None);
        assert!(error_stream_payload(false, &Ok(Some(2)))
            .unwrap()
            .contains("exit status 2"));
        let e = BackendError::new("no such container");
        assert_eq!(
            error_stream_payload(false, &Err(e.clone())).as_deref(),
            Some("no such container")
        );
        let v: serde_json::Value =
            serde_json::from_str(&error_stream_payload(true, &Err(e)).unwrap()).unwrap();
        assert_eq!(v["message"], "no such container");
    }
}
