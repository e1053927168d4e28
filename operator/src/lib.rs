//! The BulkRecorder controller (built out in the operator issue).
