//! Dispatching: which due message goes out now, on which modem, and what its
//! outcome means. Decisions are pure ([`policy`]); the loop that applies them
//! lives in [`run`].

pub mod policy;
pub mod run;
pub mod steer;
