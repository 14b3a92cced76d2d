//! IMDSv2 instance discovery.
