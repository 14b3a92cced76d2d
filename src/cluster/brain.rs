//! The failover brain: a pure state machine from inputs to actions.
