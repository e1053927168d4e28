//! Why a reconcile failed, naming the step, for the log, the Degraded condition and the event.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action}: {source}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },
    #[error("the BulkRecorder has no namespace")]
    NoNamespace,
}

impl Error {
    /// The API server refused a permission (403); its message names the verb and resource.
    pub fn is_forbidden(&self) -> bool {
        matches!(self, Self::Kube { source: kube::Error::Api(e), .. } if e.code == 403)
    }
}

/// Names the step an API error happened in.
pub trait During<T> {
    fn during(self, action: impl FnOnce() -> String) -> Result<T, Error>;
}

impl<T> During<T> for Result<T, kube::Error> {
    fn during(self, action: impl FnOnce() -> String) -> Result<T, Error> {
        self.map_err(|source| Error::Kube {
            action: action(),
            source,
        })
    }
}
