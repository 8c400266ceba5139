//! Placeholder until the chain client lands.
pub(crate) mod membership;
pub(crate) mod metagraph;
pub(crate) mod deposits;
pub(crate) mod service;
