//! Horizontal scaling: nodes exchange envelopes through a [`transport::Transport`].
pub mod transport;
