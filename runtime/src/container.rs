//! Container operations of the library side (talking to monitors).

use crate::{
    CgroupStats, ContainerCreate, ContainerState, Created, ExecOutput, Runtime, RuntimeError,
};
use std::time::Duration;

fn todo(what: &str) -> RuntimeError {
    RuntimeError::Unsupported(format!("{what} not implemented yet"))
}

pub(crate) fn create(_rt: &Runtime, _req: &ContainerCreate) -> Result<Created, RuntimeError> {
    Err(todo("create"))
}
pub(crate) fn start(_rt: &Runtime, _id: &str) -> Result<(), RuntimeError> {
    Err(todo("start"))
}
pub(crate) fn state(_rt: &Runtime, _id: &str) -> Result<ContainerState, RuntimeError> {
    Err(todo("state"))
}
pub(crate) fn kill(_rt: &Runtime, _id: &str, _s: i32, _all: bool) -> Result<(), RuntimeError> {
    Err(todo("kill"))
}
pub(crate) fn wait(_rt: &Runtime, _id: &str, _t: Duration) -> Result<ContainerState, RuntimeError> {
    Err(todo("wait"))
}
pub(crate) fn delete(_rt: &Runtime, _id: &str, _f: bool) -> Result<(), RuntimeError> {
    Err(todo("delete"))
}
pub(crate) fn exec_sync(
    _rt: &Runtime,
    _id: &str,
    _p: &oci_spec::runtime::Process,
    _t: Duration,
) -> Result<ExecOutput, RuntimeError> {
    Err(todo("exec_sync"))
}
pub(crate) fn update_resources(
    _rt: &Runtime,
    _id: &str,
    _r: &oci_spec::runtime::LinuxResources,
) -> Result<(), RuntimeError> {
    Err(todo("update"))
}
pub(crate) fn stats(_rt: &Runtime, _id: &str) -> Result<CgroupStats, RuntimeError> {
    Err(todo("stats"))
}
pub(crate) fn reopen_log(_rt: &Runtime, _id: &str) -> Result<(), RuntimeError> {
    Err(todo("reopen_log"))
}
pub(crate) fn list(_rt: &Runtime) -> Result<Vec<String>, RuntimeError> {
    Err(todo("list"))
}
pub(crate) fn signal_from_name(_n: &str) -> Result<i32, RuntimeError> {
    Err(todo("signal_from_name"))
}
