//! The `BulkRecorder` custom resource (built out in the operator issue).
