//! Runnable workflows.
