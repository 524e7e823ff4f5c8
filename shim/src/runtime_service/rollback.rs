//! Undo of a multi-step setup: each completed step registers how to undo
//! itself; unless the whole setup succeeds, the steps are undone in reverse.

/// How to undo one step.
type Undo = Box<dyn FnOnce() + Send>;

/// Undo actions of completed steps, run in reverse on drop unless disarmed.
pub(crate) struct Rollback {
    what: String,
    steps: Vec<(&'static str, Undo)>,
    armed: bool,
}

impl Rollback {
    /// A rollback for the setup of `what` (e.g. `pod sandbox <id>`), for logs.
    pub(crate) fn new(what: impl Into<String>) -> Self {
        Rollback {
            what: what.into(),
            steps: Vec::new(),
            armed: true,
        }
    }

    /// Registers the undo of a step that just completed.
    pub(crate) fn push(&mut self, step: &'static str, undo: impl FnOnce() + Send + 'static) {
        self.steps.push((step, Box::new(undo)));
    }

    /// The setup succeeded: keep everything.
    pub(crate) fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Rollback {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        while let Some((step, undo)) = self.steps.pop() {
            tracing::debug!(what = %self.what, step, "rolling back");
            undo();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn undoes_in_reverse_unless_disarmed() {
        let log = Arc::new(Mutex::new(Vec::new()));
        {
            let mut rb = Rollback::new("x");
            for i in 0..3 {
                let log = log.clone();
                rb.push("step", move || log.lock().unwrap().push(i));
            }
        }
        assert_eq!(*log.lock().unwrap(), vec![2, 1, 0]);
        let mut rb = Rollback::new("y");
        let l2 = log.clone();
        rb.push("step", move || l2.lock().unwrap().push(9));
        rb.disarm();
        assert_eq!(log.lock().unwrap().len(), 3);
    }
}
